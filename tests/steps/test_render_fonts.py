"""The PDF's fonts are the bundled Liberation Sans on any machine, and card values stay inside their cards.

Positions are read back from the PDF with pypdf; text widths come from the bundled TTF's advance widths
(fontTools), independently of the renderer's own measure.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import pypdf
import pytest

from tests.conftest import ROOT
from tests.steps.test_render_sections import BOTH_ENGINES, output, report_policy

FONTS = ROOT / "templates" / "fonts"
PX = 0.75  # both engines draw in CSS px: 1 px = 0.75 pt
CARD_EDGE_PX = 1 + 12  # .metric-card: 1px border, 12px padding
GAP_PX = 8  # .card-row gap in print


@functools.cache
def _bold_widths() -> tuple[dict[int, int], int]:
    from fontTools.ttLib import TTFont

    with TTFont(FONTS / "LiberationSans-Bold.ttf") as font:
        metrics = font["hmtx"].metrics
        return {c: metrics[g][0] for c, g in font.getBestCmap().items()}, font["head"].unitsPerEm


def bold_width_px(text: str, size_px: float) -> float:
    widths, units = _bold_widths()
    return sum(widths[ord(c)] for c in text) / units * size_px


def font_name(font: dict) -> str:
    """A font's name without its subset tag, as both engines write it: ``LiberationSans-Bold``
    (Chromium) and ``Liberation-Sans-Bold`` (WeasyPrint) are ``LiberationSansBold``."""
    return font["/BaseFont"].split("+")[-1].replace("-", "")


def chunks(page: pypdf.PageObject, charts: bool = False) -> list[tuple[str, float, str, float]]:
    """(text, x in px from the page's left edge, font name, font size in px) of each text run, in order.

    Text of the page itself only (drawn at 1 px = 0.75 pt); ``charts=True`` adds the charts' SVG text
    (drawn scaled, its x not in page px).
    """
    found: list[tuple[str, float, str, float]] = []

    def visit(text, cm, tm, font, size):
        # (Chromium writes its matrices in single precision: 0.74999996875)
        if text.strip() and (charts or (abs(cm[0] - PX) < 1e-6 and tm[0] == 1.0)):
            # WeasyPrint places text from the page's corner; Chromium moves the origin to the margin first
            x = (cm[0] * tm[4] + cm[4]) / PX
            found.append((text.strip(), x, font_name(font), size))

    page.extract_text(visitor_text=visit)
    return found


def card_values(page: pypdf.PageObject, labels: list[str]) -> list[tuple[str, float, float, float, float]]:
    """(value, its left and right x, its card's content left and right edges), in px, for a row of cards.

    A card's label starts at its content's left edge. Cards are as wide as each other: the next card's
    label gives the width; the last card ends at the page's text column, less its padding and border
    (the column's right margin is its left one: 15 mm in report.css, which Chromium rounds to 57 px).
    """
    runs = chunks(page)
    texts = [r[0] for r in runs]
    at = [texts.index(label.upper()) for label in labels]
    lefts = [runs[i][1] for i in at]
    column_right = float(page.mediabox.width) / PX - (lefts[0] - CARD_EDGE_PX)
    rights = [nxt - GAP_PX - 2 * CARD_EDGE_PX for nxt in lefts[1:]] + [column_right - CARD_EDGE_PX]
    out = []
    for i, left, right in zip(at, lefts, rights, strict=True):
        text, x, font, size = runs[i + 1]
        assert font == "LiberationSansBold", font
        out.append((text, x, x + bold_width_px(text, size), left, right))
    return out


def assert_inside(values: list[tuple[str, float, float, float, float]]) -> None:
    for text, x0, x1, left, right in values:
        where = f"{text!r} spans {x0:.1f}..{x1:.1f} px, its card {left:.1f}..{right:.1f}"
        assert left - 0.5 <= x0 and x1 <= right + 0.5, where


def value_sizes_pt(page: pypdf.PageObject, values: list[tuple[str, float, float, float, float]]) -> list[float]:
    runs = chunks(page)
    texts = [r[0] for r in runs]
    return [round(runs[texts.index(v[0])][3] * PX, 2) for v in values]


def pdf_fonts(reader: pypdf.PdfReader) -> dict[str, list[str]]:
    """The fonts the PDF's text is drawn with, each with the text runs drawn in it."""
    used: dict[str, list[str]] = {}
    for page in reader.pages:
        for text, _, font, _ in chunks(page, charts=True):
            used.setdefault(font, []).append(text)
    return used


LONG = ["$123,456,789,012", "€1,234,567.89", "987,654,321", "$9"]


def long_cards() -> tuple[list[dict], list[dict]]:
    rows = [{"a": 123456789012.0, "b": 1234567.891, "c": 987654321, "d": 9.0}]
    formats = [
        {"type": "currency", "decimals": 0},
        {"type": "currency", "currency": "EUR"},
        "integer",
        {"type": "currency", "decimals": 0},
    ]
    cards = [
        {
            "type": "metric_card",
            "id": col,
            "label": f"Card {col}",
            "format": fmt,
            "value": {"data": {"ref": "ctx.rows"}, "column": col, "agg": "sum"},
        }
        for col, fmt in zip("abcd", formats, strict=True)
    ]
    return rows, cards


@BOTH_ENGINES
def test_long_values_shrink_to_fit_their_card(run, store, engine):
    rows, cards = long_cards()
    result = run(report_policy(cards, rows=rows, render=("pdf", "html"), engine=engine))
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    reader = pypdf.PdfReader(output(store, result, "pdf")["pdf"]["path"])
    values = card_values(reader.pages[0], [f"Card {c}" for c in "abcd"])
    assert [v[0] for v in values] == LONG
    assert_inside(values)
    # the long ones are smaller, the short one keeps the full 19 pt
    assert value_sizes_pt(reader.pages[0], values) == [11.5, 13.5, 16.0, 19.0]
    html = Path(output(store, result, "html")["html"]["path"]).read_text(encoding="utf-8")
    assert '<div class="metric-value size-s">$123,456,789,012</div>' in html
    assert '<div class="metric-value size-xl">$9</div>' in html


def fontconfig_without_liberation(folder: Path) -> dict[str, str]:
    """FONTCONFIG_FILE for a machine whose only fonts are DejaVu's (as before fonts-liberation2)."""
    conf = folder / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n'
        f"<fontconfig><dir>/usr/share/fonts/truetype/dejavu</dir><cachedir>{folder / 'cache'}</cachedir></fontconfig>\n"
    )
    return {"FONTCONFIG_FILE": str(conf)}


@BOTH_ENGINES
def test_the_flagship_pdf_uses_the_bundled_fonts_on_a_machine_without_them(cli, store, tmp_path, engine):
    folder = tmp_path / "examples"
    shutil.copytree(ROOT / "policies" / "examples", folder, ignore=shutil.ignore_patterns("out"))
    path = folder / "sales_report.json"
    doc = json.loads(path.read_text())
    # the PDF only, and its charts left out: this test is about the text's fonts (charts: test_render_example)
    doc["steps"] = [
        s for s in doc["steps"] if s["type"].split(".")[0] in ("fetch", "transform", "report") or s["id"] == "pdf"
    ]
    doc["on_failure"] = []
    (build,) = [s for s in doc["steps"] if s["id"] == "build"]
    build["params"]["sections"] = [s for s in build["params"]["sections"] if s["type"] != "chart"]
    (pdf_step,) = [s for s in doc["steps"] if s["id"] == "pdf"]
    pdf_step["params"]["engine"] = engine
    path.write_text(json.dumps(doc))
    env = fontconfig_without_liberation(tmp_path)
    fonts = subprocess.run(["fc-list"], env=env, capture_output=True, text=True, check=True).stdout
    assert "Liberation" not in fonts and "DejaVu Sans" in fonts
    result = cli("run", str(path), env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = store.list_runs()
    (pdf,) = [json.loads(r["output_json"]) for r in store.get_steps(run["id"]) if r["step_id"] == "pdf"]
    reader = pypdf.PdfReader(pdf["pdf"]["path"])
    used = pdf_fonts(reader)
    samples = {font: texts[:5] for font, texts in used.items()}
    assert sorted(used) == ["LiberationMono", "LiberationSans", "LiberationSansBold"], samples
    labels = ["Revenue", "Gross margin", "Orders", "Average order"]
    values = card_values(reader.pages[0], labels)
    assert [v[0] for v in values] == ["$1,110,626", "56.3%", "1,975", "$562"]
    assert_inside(values)


@pytest.mark.parametrize("name", ["Regular", "Bold", "Italic", "BoldItalic"])
def test_the_fonts_ship_with_their_licence(name):
    from fontTools.ttLib import TTFont

    with TTFont(FONTS / f"LiberationSans-{name}.ttf") as font:
        assert font["name"].getDebugName(1) == "Liberation Sans"
    assert "SIL OPEN FONT LICENSE Version 1.1" in (FONTS / "LICENSE-OFL.txt").read_text()
