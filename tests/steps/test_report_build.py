"""report.build: the columnar snapshot, its hash and versions, conditions over it, clear errors."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests import pg
from tests.conftest import policy

ROWS = [
    {"region": "emea", "revenue": 120.5, "orders": 3, "day": "2026-11-02"},
    {"region": "apac", "revenue": 80.0, "orders": 5, "day": "2026-11-03"},
    {"region": "amer", "revenue": 200.25, "orders": 1, "day": "2026-11-04"},
]


def report(rows=ROWS, sections=None, **params):
    return policy(
        {"id": "rows", "type": "core.value", "params": {"value": rows}},
        {
            "id": "build",
            "type": "report.build",
            "params": {
                "report_id": "sales",
                "title": {"template": "Sales for {{ params.region }}"},
                "sections": sections
                or [
                    {
                        "type": "metric_card",
                        "label": "Revenue",
                        "value": {"data": {"ref": "ctx.rows"}, "column": "revenue", "agg": "sum"},
                        "compare_to": 500,
                        "thresholds": [
                            {"condition": {"ref": "ctx.card.delta", "op": "lt", "value": 0}, "status": "bad"}
                        ],
                    },
                    {
                        "type": "data_table",
                        "data": {"ref": "ctx.rows"},
                        "columns": ["region", {"name": "revenue", "format": "currency"}],
                        "sort": {"by": ["revenue"], "descending": True},
                        "max_rows": 2,
                        "highlight": {"condition": {"ref": "ctx.row.orders", "op": "ge", "value": 3}, "style": "good"},
                    },
                    {
                        "type": "conditional_section",
                        "condition": {"ref": "ctx.metrics.revenue.value", "op": "gt", "value": 1000},
                        "sections": [
                            {"type": "chart", "kind": "bar", "data": {"ref": "ctx.rows"}, "x": "region", "y": "revenue"}
                        ],
                    },
                ],
                **params,
            },
        },
        params={"region": {"type": "string", "default": "all"}},
    )


def output(store, result, step="build"):
    (row,) = [r for r in store.get_steps(result.run_id) if r["step_id"] == step]
    return json.loads(row["output_json"])


def test_the_snapshot_freezes_used_values_as_columnar_json(run, store):
    result = run(report())
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    out = output(store, result)
    snapshot = out["snapshot"]
    assert out["title"] == snapshot["title"] == "Sales for all"
    assert snapshot["metrics"]["revenue"] == {
        "value": 400.75,
        "compare_to": 500,
        "delta": -99.25,
        "delta_pct": -0.1985,
        "status": "bad",
    }
    table = snapshot["sections"]["/sections/1"]
    assert table["data"] == {
        "columns": ["region", "revenue"],
        "dtypes": ["str", "float"],
        "values": [["amer", "emea"], [200.25, 120.5]],
    }
    assert table["total_rows"] == 3
    assert table["row_styles"] == [None, "good"]
    assert snapshot["conditions"] == {"/sections/0/thresholds/0/condition": True, "/sections/2/condition": False}
    # a hidden branch is not frozen
    assert "/sections/2/sections/0" not in snapshot["sections"]


def test_the_hash_is_sha256_of_the_canonical_encoding(run, store):
    out = output(store, run(report()))
    canonical = json.dumps(out["snapshot"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert out["hash"] == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_new_version_only_when_the_snapshot_changes(run, store, state_dir):
    first = output(store, run(report()))
    again = output(store, run(report()))
    changed = output(store, run(report(rows=[*ROWS, {"region": "latam", "revenue": 1.0, "orders": 1, "day": "x"}])))
    assert (first["version"], first["new_version"]) == (1, True)
    assert (again["version"], again["new_version"], again["hash"]) == (1, False, first["hash"])
    assert (changed["version"], changed["new_version"]) == (2, True)
    assert changed["hash"] != first["hash"]
    assert pg.sql(state_dir, "select report_id, latest_version, latest_hash from reports") == [
        ("sales", 2, changed["hash"])
    ]
    versions = pg.sql(state_dir, "select version, hash, snapshot_json from report_versions order by version")
    assert [(v, h) for v, h, _ in versions] == [(1, first["hash"]), (2, changed["hash"])]
    assert json.loads(versions[0][2]) == first["snapshot"]


def test_a_dry_run_computes_the_version_without_storing_it(run, store, state_dir):
    result = run(report(), dry_run=True)
    out = output(store, result)
    assert (out["version"], out["new_version"]) == (1, True)
    assert pg.sql(state_dir, "select count(*) from report_versions") == [(0,)]


def test_the_conditional_section_is_frozen_when_its_condition_holds(run, store):
    out = output(store, run(report(rows=[{**r, "revenue": r["revenue"] * 10} for r in ROWS])))
    assert out["snapshot"]["conditions"]["/sections/2/condition"] is True
    chart = out["snapshot"]["sections"]["/sections/2/sections/0"]
    assert chart["data"]["columns"] == ["region", "revenue"]


def test_a_missing_column_names_the_section_and_the_columns(run):
    sections = [
        {"type": "metric_card", "label": "n", "value": 1},
        {"type": "data_table", "data": {"ref": "ctx.rows"}, "columns": ["region", "revnue"]},
    ]
    result = run(report(sections=sections))
    assert result.status == "FAILED"
    (build,) = [s for s in result.steps if s.id == "build"]
    assert build.error == (
        "section 1 (data_table): column 'revnue' not found (columns: region, revenue, orders, day); "
        "did you mean 'revenue'? at /steps/1/params/sections/1/columns/1"
    )


def test_a_missing_chart_column_in_a_nested_section(run):
    sections = [
        {
            "type": "conditional_section",
            "condition": True,
            "sections": [{"type": "chart", "kind": "line", "data": {"ref": "ctx.rows"}, "x": "date", "y": "revenue"}],
        }
    ]
    (build,) = [s for s in run(report(sections=sections)).steps if s.id == "build"]
    assert build.error == (
        "section 0.0 (chart): column 'date' not found (columns: region, revenue, orders, day) "
        "at /steps/1/params/sections/0/sections/0/x"
    )


def test_validate_reports_bad_conditions_and_kinds_at_their_pointers(cli, write_policy):
    sections = [
        {
            "type": "conditional_section",
            "condition": {"ref": "metrics.x", "op": "gt", "value": 1},
            "sections": [{"type": "text", "body": "x"}],
        },
        {"type": "chart", "kind": "bars", "data": [], "x": "a", "y": "b"},
    ]
    result = cli("validate", str(write_policy(report(sections=sections))))
    assert result.returncode == 2
    text = " ".join(result.stderr.split())  # the problem list wraps long lines
    assert "/steps/1/params/sections/0/condition/ref" in text
    assert "ref 'metrics.x' must start with 'ctx.'" in text
    assert "/steps/1/params/sections/1/kind" in text
    assert "unknown chart kind 'bars'" in text


@pytest.mark.parametrize(
    ("agg", "expected"),
    [("sum", 400.75), ("mean", 133.58333333333334), ("min", 80.0), ("max", 200.25), ("count", 3), ("last", 200.25)],
)
def test_metric_aggregates(run, store, agg, expected):
    sections = [
        {"type": "metric_card", "label": "x", "value": {"data": {"ref": "ctx.rows"}, "column": "revenue", "agg": agg}}
    ]
    out = output(store, run(report(sections=sections)))
    assert out["snapshot"]["metrics"]["x"]["value"] == expected


def test_a_literal_ref_on_the_right_compares_two_snapshot_values(run, store):
    sections = [
        {
            "type": "metric_card",
            "id": "total",
            "label": "Total",
            "value": {"data": {"ref": "ctx.rows"}, "column": "revenue", "agg": "sum"},
        },
        {
            "type": "conditional_section",
            "condition": {
                "ref": "ctx.metrics.total.value",
                "op": "lt",
                "value": {"literal": {"ref": "ctx.values.target"}},
            },
            "sections": [{"type": "text", "body": "below"}],
        },
    ]
    for target, shown in ((500, True), (300, False)):
        out = output(store, run(report(sections=sections, values={"target": target})))
        assert out["snapshot"]["conditions"] == {"/sections/1/condition": shown}
