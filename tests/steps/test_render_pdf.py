"""render.pdf's paper: page_size and orientation reach the PDF's pages (parsed back with pypdf)."""

from __future__ import annotations

import pypdf
import pytest

from tests.steps.test_render_sections import output, report_policy

# width x height in PostScript points (1/72 in), as WeasyPrint writes them: mm * 72 / 25.4
PAPER = {
    "A3": (841.89, 1190.55),
    "A4": (595.28, 841.89),
    "A5": (419.53, 595.28),
    "Letter": (612.0, 792.0),
    "Legal": (612.0, 1008.0),
}


@pytest.mark.parametrize(
    ("page_size", "orientation", "size"),
    [
        ("A4", "portrait", PAPER["A4"]),
        ("A5", "portrait", PAPER["A5"]),
        ("Letter", "portrait", PAPER["Letter"]),
        ("A3", "portrait", PAPER["A3"]),
        ("Legal", "portrait", PAPER["Legal"]),
        ("A4", "landscape", PAPER["A4"][::-1]),
        ("A5", "landscape", PAPER["A5"][::-1]),
    ],
    ids=["A4", "A5", "Letter", "A3", "Legal", "A4-landscape", "A5-landscape"],
)
def test_every_page_has_the_paper_of_the_params(run, store, page_size, orientation, size):
    # a table long enough for several pages: the first page and the others have their own @page rules
    rows = [{"n": i, "text": f"row {i}"} for i in range(150)]
    sections = [{"type": "data_table", "data": {"ref": "ctx.rows"}, "max_rows": 150}]
    params = {"page_size": page_size, "orientation": orientation}
    result = run(report_policy(sections, rows=rows, render=("pdf",), render_params=params))
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    out = output(store, result, "pdf")
    reader = pypdf.PdfReader(out["pdf"]["path"])
    assert out["pages"] == len(reader.pages) >= 2
    boxes = {(round(float(p.mediabox.width), 2), round(float(p.mediabox.height), 2)) for p in reader.pages}
    assert boxes == {size}


def test_the_paper_is_part_of_the_cache_key(run, store):
    sections = [{"type": "text", "body": "Paper"}]
    a5 = run(report_policy(sections, render=("pdf",), render_params={"page_size": "A5"}))
    a4 = run(report_policy(sections, render=("pdf",)))
    first, second = output(store, a5, "pdf"), output(store, a4, "pdf")
    assert (first["cache_status"], second["cache_status"]) == ("miss", "miss")
    assert first["pdf"]["sha256"] != second["pdf"]["sha256"]


def test_the_params_win_over_a_page_size_in_your_report_css(run, store, tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "report.css").write_text("@page { size: Letter landscape; margin: 10mm; }\n")
    params = {"page_size": "A5", "template_dir": "tpl"}
    result = run(report_policy([{"type": "text", "body": "Mine"}], render=("pdf",), render_params=params))
    reader = pypdf.PdfReader(output(store, result, "pdf")["pdf"]["path"])
    box = reader.pages[0].mediabox
    assert (round(float(box.width), 2), round(float(box.height), 2)) == PAPER["A5"]
