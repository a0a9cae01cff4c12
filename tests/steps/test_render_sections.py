"""render.html / render.pdf on small reports: conditions, pagination, templates, the registry, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pypdf
import pytest

from engine import StepError
from tests.conftest import policy

ENGINES = ("chromium", "weasyprint")
BOTH_ENGINES = pytest.mark.parametrize("engine", ENGINES)
"""A PDF test that must hold for both of render.pdf's engines."""


def report_policy(sections, rows=None, render=("html", "pdf"), params=None, render_params=None, engine=None, **top):
    rows = rows if rows is not None else [{"region": "emea", "revenue": 10.0}, {"region": "apac", "revenue": 30.0}]
    steps = [
        {"id": "rows", "type": "core.value", "params": {"value": rows}},
        {
            "id": "build",
            "type": "report.build",
            "params": {"report_id": "t", "title": "Test report", "sections": sections},
        },
    ]
    for kind in render:
        params_of_kind = {"report": {"ref": "ctx.build"}, **(render_params or {})}
        if kind == "pdf" and engine is not None:
            params_of_kind["engine"] = engine
        steps.append({"id": kind, "type": f"render.{kind}", "params": params_of_kind})
    return policy(*steps, params=params or {}, **top)


def output(store, result, step):
    (row,) = [r for r in store.get_steps(result.run_id) if r["step_id"] == step]
    return json.loads(row["output_json"])


def html_of(store, result):
    return Path(output(store, result, "html")["html"]["path"]).read_text(encoding="utf-8")


def pdf_text(store, result):
    reader = pypdf.PdfReader(output(store, result, "pdf")["pdf"]["path"])
    return [page.extract_text() for page in reader.pages]


ALERT = [
    {
        "type": "metric_card",
        "id": "total",
        "label": "Total",
        "value": {"data": {"ref": "ctx.rows"}, "column": "revenue", "agg": "sum"},
    },
    {
        "type": "conditional_section",
        "title": "Over budget",
        "condition": {"ref": "ctx.metrics.total.value", "op": "gt", "value": {"ref": "ctx.params.budget"}},
        "sections": [{"type": "text", "body": "Spending passed the **budget**."}],
    },
    {"type": "text", "body": "End of report."},
]


@pytest.mark.parametrize(("budget", "shown"), [(39, True), (40, False), (41, False)], ids=["over", "equal", "under"])
def test_a_conditional_section_appears_exactly_when_its_condition_holds(run, store, budget, shown):
    doc = report_policy(ALERT, params={"budget": {"type": "number", "default": budget}})
    result = run(doc)
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    html = html_of(store, result)
    text = "\n".join(pdf_text(store, result))
    assert ("Over budget" in html, "Over budget" in text) == (shown, shown)
    assert ("Spending passed the <strong>budget</strong>." in html) is shown
    assert "End of report." in html and "End of report." in text
    assert output(store, result, "build")["snapshot"]["conditions"] == {"/sections/1/condition": shown}


@BOTH_ENGINES
def test_a_2000_row_table_paginates_with_repeated_headers(run, store, engine):
    rows = [{"order_id": i, "customer": f"customer {i:04d}", "amount": i * 1.5} for i in range(1, 2001)]
    sections = [
        {
            "type": "data_table",
            "data": {"ref": "ctx.rows"},
            "columns": [
                {"name": "order_id", "label": "Order id", "format": "text"},
                {"name": "customer", "label": "Customer name"},
                {"name": "amount", "label": "Amount due", "format": "currency"},
            ],
        }
    ]
    result = run(report_policy(sections, rows=rows, render=("pdf",), engine=engine))
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    pages = pdf_text(store, result)
    out = output(store, result, "pdf")
    assert out["pages"] == len(pages) > 30
    # every page starts its table with the header row, and no row is lost or split
    assert all("Order id Customer name Amount due" in page for page in pages)
    whole_rows = [m for page in pages for m in re.findall(r"^(\d+) customer \d{4} \$[\d,]+\.\d\d$", page, re.M)]
    assert [int(n) for n in whole_rows] == list(range(1, 2001))  # each row once, whole, on one page
    assert [f"Page {n} of {len(pages)}" in page for n, page in enumerate(pages, 1)] == [True] * len(pages)


def test_a_template_dir_overrides_a_partial_by_name_and_changes_the_cache_key(run, store, tmp_path):
    sections = [{"type": "text", "body": "Hello"}]
    first = run(report_policy(sections, render=("html",)))
    folder = tmp_path / "mytemplates" / "sections"
    folder.mkdir(parents=True)
    (folder / "text.html").write_text('<p class="custom">custom: {{ section.html }}</p>\n')
    second = run(report_policy(sections, render=("html",), render_params={"template_dir": "mytemplates"}))
    html = html_of(store, second)
    assert '<p class="custom">custom: <p>Hello</p>\n</p>' in html
    assert "<title>Test report</title>" in html  # the built-in base is kept
    assert "Plotly" not in html  # plotly.js is only inlined when the report has charts
    a, b = output(store, first, "html"), output(store, second, "html")
    assert (a["cache_status"], b["cache_status"]) == ("miss", "miss")
    assert a["cache_key"] != b["cache_key"]
    (folder / "text.html").write_text('<p class="custom">changed: {{ section.html }}</p>\n')
    third = run(report_policy(sections, render=("html",), render_params={"template_dir": "mytemplates"}))
    assert output(store, third, "html")["cache_status"] == "miss"
    assert "changed: <p>Hello</p>" in html_of(store, third)


def test_text_is_escaped_and_never_passed_through_as_html(run, store):
    body = "<script>alert(1)</script> and **bold**"
    result = run(report_policy([{"type": "text", "title": "<b>T</b>", "body": body}], render=("html",)))
    html = html_of(store, result)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; and <strong>bold</strong>" in html
    assert "&lt;b&gt;T&lt;/b&gt;" in html


def test_data_in_a_chart_cannot_close_the_script_element(run, store):
    rows = [{"label": "</script><script>alert(1)</script>", "n": 1}]
    sections = [{"type": "chart", "kind": "bar", "data": {"ref": "ctx.rows"}, "x": "label", "y": "n"}]
    html = html_of(store, run(report_policy(sections, rows=rows, render=("html",))))
    assert "<script>alert(1)" not in html
    assert "\\u003c/script\\u003e" in html


def test_a_plugin_adds_a_chart_kind_and_a_section_type(run, store, tmp_path):
    from steps.render import chart_kind, registry, section_renderer

    @chart_kind("test.waterfall")
    def waterfall(data, spec):
        import plotly.graph_objects as go

        return [go.Waterfall(x=data[spec["x"]], y=data[spec["y"][0]], name="flow")], {}

    @section_renderer("test.notice")
    def notice(section, frozen, doc):
        return {"text": section["text"], "rows": len(frozen["data"]["values"][0])}

    (tmp_path / "tpl" / "sections").mkdir(parents=True)
    (tmp_path / "tpl" / "sections" / "test.notice.html").write_text(
        '<aside class="notice">{{ section.text }} ({{ section.rows }} rows)</aside>\n'
    )
    sections = [
        {"type": "chart", "kind": "test.waterfall", "data": {"ref": "ctx.rows"}, "x": "region", "y": "revenue"},
        {"type": "test.notice", "text": "Read me", "data": {"ref": "ctx.rows"}},
    ]
    try:
        result = run(report_policy(sections, render=("html",), render_params={"template_dir": "tpl"}))
        assert result.status == "SUCCESS", [s.error for s in result.steps]
        html = html_of(store, result)
        assert '"type":"waterfall"' in html
        assert '<aside class="notice">Read me (2 rows)</aside>' in html
    finally:
        registry._charts.pop("test.waterfall")
        registry._sections.pop("test.notice")


def test_a_section_type_without_a_renderer_is_a_clear_error(run):
    result = run(report_policy([{"type": "acme.map", "data": {"ref": "ctx.rows"}}], render=("html",)))
    (html,) = [s for s in result.steps if s.id == "html"]
    assert html.error == (
        "section at /steps/2/params/sections/0: no renderer for section type 'acme.map' "
        "(types: chart, conditional_section, data_table, metric_card, text); is the plugin that adds it loaded?"
    )


def test_a_missing_browser_says_how_to_install_it(run, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium there
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    sections = [{"type": "chart", "kind": "line", "data": {"ref": "ctx.rows"}, "x": "region", "y": "revenue"}]
    result = run(report_policy(sections, render=("pdf",)))
    (pdf,) = [s for s in result.steps if s.id == "pdf"]
    assert result.status == "FAILED"
    assert "no browser was found" in pdf.error
    assert "Install it with `apt-get install chromium` (Debian/Ubuntu)" in pdf.error


def test_a_dry_run_renders_for_real(run, store):
    result = run(report_policy([{"type": "text", "body": "Dry"}], render=("html", "pdf")), dry_run=True)
    assert result.status == "SUCCESS" and result.dry_run
    assert "<p>Dry</p>" in html_of(store, result)
    assert "Dry" in pdf_text(store, result)[0]


def test_cache_false_renders_every_time(run, store):
    doc = report_policy([{"type": "text", "body": "x"}], render=("html",), render_params={"cache": False})
    first, second = run(doc), run(doc)
    assert [output(store, r, "html")["cache_status"] for r in (first, second)] == ["disabled", "disabled"]


def test_a_report_that_is_not_a_report_build_output_is_refused(run):
    doc = policy(
        {"id": "x", "type": "core.value", "params": {"value": {"title": "nope"}}},
        {"id": "html", "type": "render.html", "params": {"report": {"ref": "ctx.x"}}},
    )
    (html,) = [s for s in run(doc).steps if s.id == "html"]
    assert html.error.startswith("report at /steps/1/params/report must be a report.build output")


def test_formats():
    from steps.render.formats import format_delta, format_value

    assert format_value(1234.5, {"type": "currency", "currency": "EUR"}) == "€1,234.50"
    assert format_value(-5, {"type": "currency", "decimals": 0}) == "-$5"
    assert format_value(1000, {"type": "currency", "currency": "SEK"}) == "SEK 1,000.00"
    assert format_value(0.1234, {"type": "percent"}) == "12.3%"
    assert format_value(1234567.891, {"type": "number", "decimals": 1}) == "1,234,567.9"
    assert format_value("2026-11-03", {"type": "date", "date_format": "%d %b %Y"}) == "03 Nov 2026"
    assert format_value(None, {"type": "number"}) == "–"
    assert format_value(42, {}) == "42"
    assert format_delta(-99.25, -0.1985, {"type": "currency"}) == "−$99.25 (−19.9%)"
    assert format_delta(-0.005, None, {"type": "percent"}) == "−0.5 pts"


def test_a_browser_path_that_does_not_exist_is_named(monkeypatch):
    from steps.render.charts import browser_path

    monkeypatch.setenv("BROWSER_PATH", "/nope/chromium")
    with pytest.raises(StepError) as exc:
        browser_path()
    assert str(exc.value).startswith("the browser '/nope/chromium' does not exist or is not executable.")


def test_a_text_template_reads_the_snapshot(run, store):
    sections = [
        {
            "type": "metric_card",
            "id": "total",
            "label": "Total",
            "value": {"data": {"ref": "ctx.rows"}, "column": "revenue", "agg": "sum"},
        },
        {
            "type": "text",
            "template": "Revenue was **{{ metrics.total.value | fmt('currency') }}** in {{ report.title }}.",
        },
    ]
    html = html_of(store, run(report_policy(sections, render=("html",))))
    assert "<p>Revenue was <strong>$40.00</strong> in Test report.</p>" in html


def test_a_text_section_takes_body_or_template(cli, write_policy):
    doc = report_policy([{"type": "text", "body": "a", "template": "b"}], render=())
    result = cli("validate", str(write_policy(doc)))
    assert result.returncode == 2
    assert "a text section takes either 'body' (Markdown) or 'template' (Jinja2)" in " ".join(result.stderr.split())


CANDLES = [
    {
        "day": f"2026-11-0{d}",
        "open": 10.0 + d,
        "high": 12.0 + d,
        "low": 9.0 + d,
        "close": 11.0 + d,
        "region": "emea" if d % 2 else "apac",
    }
    for d in range(1, 7)
]


@pytest.mark.parametrize(
    ("kind", "y", "series", "trace"),
    [
        ("line", "close", "region", "scatter"),
        ("bar", ["open", "close"], None, "bar"),
        ("stacked_bar", "close", "region", "bar"),
        ("area", "close", "region", "scatter"),
        ("pie", "close", None, "pie"),
        ("scatter", "high", None, "scatter"),
        ("candlestick", ["open", "high", "low", "close"], None, "candlestick"),
    ],
)
def test_every_chart_kind_draws(run, store, kind, y, series, trace):
    chart = {"type": "chart", "kind": kind, "title": f"A {kind}", "data": {"ref": "ctx.rows"}, "x": "day", "y": y}
    if series:
        chart["series"] = series
    result = run(report_policy([chart], rows=CANDLES, render=("html",)))
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    html = html_of(store, result)
    assert f'"type":"{trace}"' in html
    assert f"A {kind}" in html
