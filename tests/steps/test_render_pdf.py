"""render.pdf's paper: page_size and orientation reach the PDF's pages (parsed back with pypdf), with both engines."""

from __future__ import annotations

import pypdf

from tests.steps.test_render_sections import BOTH_ENGINES, output, report_policy

# width x height in PostScript points (1/72 in), as WeasyPrint writes them: mm * 72 / 25.4
PAPER = {
    "A3": (841.89, 1190.55),
    "A4": (595.28, 841.89),
    "A5": (419.53, 595.28),
    "Letter": (612.0, 792.0),
    "Legal": (612.0, 1008.0),
}
# Chromium rounds its pages to whole CSS pixels: A4 is 594.96 x 841.92 pt (793 x 1123 px)
TOLERANCE_PT = {"weasyprint": 0.01, "chromium": 0.75}

PAPERS = [
    ("A4", "portrait", PAPER["A4"]),
    ("A5", "portrait", PAPER["A5"]),
    ("Letter", "portrait", PAPER["Letter"]),
    ("A3", "portrait", PAPER["A3"]),
    ("Legal", "portrait", PAPER["Legal"]),
    ("A4", "landscape", PAPER["A4"][::-1]),
    ("A5", "landscape", PAPER["A5"][::-1]),
]


def sizes(reader: pypdf.PdfReader) -> list[tuple[float, float]]:
    return [(float(p.mediabox.width), float(p.mediabox.height)) for p in reader.pages]


@BOTH_ENGINES
def test_every_page_has_the_paper_of_the_params(run, store, engine):
    # a table long enough for several pages: the first page and the others have their own @page rules;
    # one run renders every paper (with Chromium, all in the run's one browser)
    rows = [{"n": i, "text": f"row {i}"} for i in range(150)]
    sections = [{"type": "data_table", "data": {"ref": "ctx.rows"}, "max_rows": 150}]
    doc = report_policy(sections, rows=rows, render=())
    for size, orientation, _ in PAPERS:
        params = {"report": {"ref": "ctx.build"}, "engine": engine, "page_size": size, "orientation": orientation}
        doc["steps"].append({"id": f"pdf_{size.lower()}_{orientation}", "type": "render.pdf", "params": params})
    result = run(doc)
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    for size, orientation, (width, height) in PAPERS:
        out = output(store, result, f"pdf_{size.lower()}_{orientation}")
        reader = pypdf.PdfReader(out["pdf"]["path"])
        assert out["pages"] == len(reader.pages) >= 2
        assert out["engine"] == engine
        for w, h in sizes(reader):
            where = f"{size} {orientation}: {w} x {h} pt"
            assert abs(w - width) <= TOLERANCE_PT[engine] and abs(h - height) <= TOLERANCE_PT[engine], where


def test_the_paper_is_part_of_the_cache_key(run, store):
    sections = [{"type": "text", "body": "Paper"}]
    a5 = run(report_policy(sections, render=("pdf",), render_params={"page_size": "A5"}))
    a4 = run(report_policy(sections, render=("pdf",)))
    first, second = output(store, a5, "pdf"), output(store, a4, "pdf")
    assert (first["cache_status"], second["cache_status"]) == ("miss", "miss")
    assert first["pdf"]["sha256"] != second["pdf"]["sha256"]


@BOTH_ENGINES
def test_the_params_win_over_a_page_size_in_your_report_css(run, store, tmp_path, engine):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "report.css").write_text("@page { size: Letter landscape !important; margin: 10mm; }\n")
    params = {"page_size": "A5", "template_dir": "tpl", "engine": engine}
    result = run(report_policy([{"type": "text", "body": "Mine"}], render=("pdf",), render_params=params))
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    reader = pypdf.PdfReader(output(store, result, "pdf")["pdf"]["path"])
    ((width, height),) = sizes(reader)
    assert abs(width - PAPER["A5"][0]) <= TOLERANCE_PT[engine] and abs(height - PAPER["A5"][1]) <= TOLERANCE_PT[engine]


def test_the_engine_is_part_of_the_cache_key(run, store):
    sections = [{"type": "text", "body": "Which engine"}]
    outs = [
        output(store, run(report_policy(sections, render=("pdf",), render_params={"engine": engine})), "pdf")
        for engine in ("chromium", "weasyprint", "chromium")
    ]
    assert [o["engine"] for o in outs] == ["chromium", "weasyprint", "chromium"]
    assert [o["cache_status"] for o in outs] == ["miss", "miss", "hit"]
    assert outs[0]["cache_key"] != outs[1]["cache_key"]
    assert outs[2]["pdf"] == outs[0]["pdf"]
