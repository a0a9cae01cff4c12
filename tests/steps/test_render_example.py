"""render.html and render.pdf on the example sales report, checked for real.

The example policy (policies/examples/sales_report.json) is run twice in one state directory,
once for the whole module, with its PDF made by both engines (its own ``pdf`` step, Chromium on
this machine, and the same step with ``engine: "weasyprint"``): both PDFs are parsed back with
pypdf and must read the same; the HTML is loaded in headless Chromium, and the second run must
come from the render cache without a single Kaleido call.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pypdf
import pytest

from engine.api import run_policy
from engine.store import Store
from tests.conftest import ROOT
from tests.steps.test_render_fonts import assert_inside, card_values

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Runs:
    def __init__(self, store: Store, first, second, kaleido_calls: list[int]) -> None:
        self.store, self.first, self.second, self.kaleido_calls = store, first, second, kaleido_calls

    def output(self, result, step: str) -> dict:
        (row,) = [r for r in self.store.get_steps(result.run_id) if r["step_id"] == step]
        return json.loads(row["output_json"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    import kaleido

    folder = tmp_path_factory.mktemp("example")
    shutil.copytree(ROOT / "policies" / "examples", folder / "examples", ignore=shutil.ignore_patterns("out"))
    path = folder / "examples" / "sales_report.json"
    doc = json.loads(path.read_text())
    # rendering only: the send steps are tested in tests/test_examples.py, with an SMTP server
    doc["steps"] = [s for s in doc["steps"] if not s["type"].startswith("send.")]
    doc["on_failure"] = []
    # the same PDF by WeasyPrint, and once more with PNG charts, to see raster images embedded
    (pdf_step,) = [s for s in doc["steps"] if s["id"] == "pdf"]
    doc["steps"].append({**pdf_step, "id": "pdf_weasyprint", "params": {**pdf_step["params"], "engine": "weasyprint"}})
    params = {"report": {"ref": "ctx.build"}, "engine": "weasyprint", "chart_format": "png"}
    doc["steps"].append({"id": "pdf_png", "type": "render.pdf", "params": params})
    path.write_text(json.dumps(doc))

    calls: list[int] = []
    original = kaleido.Kaleido.calc_fig

    async def counting(self, *args, **kwargs):
        calls.append(1)
        return await original(self, *args, **kwargs)

    store = Store(folder / "state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kaleido.Kaleido, "calc_fig", counting)
        first = asyncio.run(run_policy(path, store=store))
        counts = [len(calls)]
        second = asyncio.run(run_policy(path, store=store))
        counts.append(len(calls) - counts[0])
    yield Runs(store, first, second, counts)
    store.close()


@pytest.fixture(scope="module", params=[("pdf", "chromium"), ("pdf_weasyprint", "weasyprint")], ids=lambda p: p[1])
def pdf(runs, request):
    step, engine = request.param
    out = runs.output(runs.first, step)
    assert out["engine"] == engine
    return out, pypdf.PdfReader(out["pdf"]["path"])


def test_the_example_runs(runs):
    assert runs.first.status == "SUCCESS", [s.error for s in runs.first.steps]
    assert runs.second.status == "SUCCESS", [s.error for s in runs.second.steps]


def test_the_pdf_has_the_title_metrics_tables_and_page_numbers(pdf):
    out, reader = pdf
    assert out["pdf"]["media_type"] == "application/pdf"
    assert out["pdf"]["name"] == "monthly-sales-v1.pdf"
    assert Path(out["pdf"]["path"]).stat().st_size == out["pdf"]["size"]
    assert out["pages"] == len(reader.pages) == 3
    assert reader.metadata.title == "Monthly sales review: 2026-11"
    assert reader.metadata.author == "Finance operations"
    first = reader.pages[0].extract_text()
    assert "Monthly sales review: 2026-11" in first
    assert "$1,110,626" in first  # the revenue card
    assert "+$92,936 (+9.1%)" in first  # its delta
    assert "Margin alert" in first  # LATAM is below the 50% target
    text = [page.extract_text() for page in reader.pages]
    assert [f"Page {n} of 3" in t for n, t in enumerate(text, 1)] == [True, True, True]
    # the running header from page 2 on: the title and the subtitle
    subtitle = "All regions and channels, compared with 2026-10"
    assert [t.count("Monthly sales review: 2026-11") for t in text[1:]] == [1, 1]
    assert [t.count(subtitle) for t in text] == [1, 1, 1]  # the first page's is its header's
    everything = "\n".join(text)
    assert "LATAM 186 $104,078 $57,233 $46,845 45.0%" in everything  # a row of the region table
    assert "16 more rows (36 in all)" in everything


def test_every_card_value_stays_inside_its_card(pdf):
    _, reader = pdf
    values = card_values(reader.pages[0], ["Revenue", "Gross margin", "Orders", "Average order"])
    assert [v[0] for v in values] == ["$1,110,626", "56.3%", "1,975", "$562"]
    assert_inside(values)


def test_svg_charts_are_embedded_as_vectors_with_selectable_text(pdf):
    _, reader = pdf
    everything = "\n".join(page.extract_text() for page in reader.pages)
    for title in (
        "Revenue by region, last twelve months",
        "Revenue by region and category, this month",
        "Channel mix, this month",
        "Gross margin, last twelve months",
    ):
        assert title in everything
    assert "$400,000" in everything  # an axis tick of the line chart
    assert sum(len(page.images) for page in reader.pages) == 0  # vectors, not pictures


def test_png_charts_are_embedded_as_images(runs):
    out = runs.output(runs.first, "pdf_png")
    reader = pypdf.PdfReader(out["pdf"]["path"])
    # the pages share one resource dictionary, so each page lists every image: count distinct ones
    images = list({image.data: image for page in reader.pages for image in page.images}.values())
    assert len(images) == 4
    assert all(image.image.width >= 1000 for image in images)  # drawn at png_scale 2


def test_the_second_render_is_a_cache_hit_without_kaleido(runs):
    # 4 charts x 2 WeasyPrint PDFs (a chart drawn again after Kaleido's page race counts twice), then
    # none; Chromium's PDF draws its charts in the page, without Kaleido
    assert runs.kaleido_calls[0] >= 8 and runs.kaleido_calls[1] == 0
    build1, build2 = runs.output(runs.first, "build"), runs.output(runs.second, "build")
    assert (build2["version"], build2["new_version"], build2["hash"]) == (1, False, build1["hash"])
    for step, field in (("html", "html"), ("pdf", "pdf"), ("pdf_weasyprint", "pdf"), ("pdf_png", "pdf")):
        first, second = runs.output(runs.first, step), runs.output(runs.second, step)
        assert (first["cache_status"], second["cache_status"]) == ("miss", "hit")
        assert second[field] == first[field]
        assert second["cache_key"] == first["cache_key"]


def test_the_html_is_self_contained_and_loads_plotly_once(runs):
    html = Path(runs.output(runs.first, "html")["html"]["path"]).read_text(encoding="utf-8")
    assert html.count("Plotly.newPlot(") == 4
    assert html.count("<script>") == 5  # plotly.js once, then one per chart
    assert "<script src=" not in html and "<link " not in html  # nothing is fetched


def test_the_html_charts_render_in_headless_chromium(runs, tmp_path):
    page = Path(runs.output(runs.first, "html")["html"]["path"])
    local = tmp_path / "report.html"
    shutil.copyfile(page, local)
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            local.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    ).stdout
    # each chart div holds one plot-container, and plotly.js drew an <svg> inside it
    charts = dom.split('<div class="chart-interactive')[1:]
    assert len(charts) == 4, dom[:300]
    for chart in charts:
        container = chart.split('class="plot-container', 1)
        assert len(container) == 2
        assert '<svg class="main-svg"' in container[1]
