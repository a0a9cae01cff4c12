"""Shorthands and alternative names the stage steps accept, as a policy author may write them."""

from __future__ import annotations

import json
import sqlite3

from engine.artifacts import ArtifactStore
from engine.outputs import decode
from tests.conftest import policy

ROWS = [{"region": "a", "amount": 1.5}, {"region": "a", "amount": 2}, {"region": "b", "amount": 3}]


def output(store, run_id, step):
    (row,) = [r for r in store.get_steps(run_id) if r["step_id"] == step]
    assert row["status"] == "SUCCESS", row["error"]
    return decode(json.loads(row["output_json"]), ArtifactStore(store.state_dir / "artifacts"))


def test_shorthands_across_the_stages(run, store, tmp_path):
    doc = policy(
        {"id": "v", "type": "core.value", "params": {"value": ROWS}},
        {
            "id": "g",
            "type": "transform.frame",
            "params": {
                "input": {"ref": "ctx.v"},
                "ops": [
                    {
                        "op": "group_by",
                        "keys": ["region"],
                        # "column": "fn" shorthand, and "agg" for "fn"
                        "aggregate": {"amount": "sum", "n": {"column": "amount", "agg": "count"}},
                    }
                ],
            },
        },
        {
            "id": "c",
            "type": "transform.validate",
            "params": {
                "input": {"ref": "ctx.g.data"},
                "mode": "quarantine",
                "min_valid_ratio": 0.5,
                "columns": {"amount": {"dtype": "float", "checks": {"ge": 0, "le": 3}}},  # an object of checks
            },
        },
        {
            "id": "s",
            "type": "transform.store",
            "params": {
                "input": {"ref": "ctx.c.valid"},
                "database": "out.db",
                "table": "t",
                "write_disposition": "replace",
            },
        },
        {
            "id": "r",
            "type": "report.build",
            "params": {
                "report_id": "x",
                "title": "X",
                "sections": [
                    {
                        "type": "metric_card",
                        "id": "top",
                        "label": "Top",
                        "value": {"data": {"ref": "ctx.g.data"}, "column": "amount", "aggregate": "max"},
                    }
                ],
            },
        },
    )
    result = run(doc)
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    assert output(store, result.run_id, "g")["data"].to_dict("records") == [
        {"region": "a", "amount": 3.5, "n": 2},
        {"region": "b", "amount": 3.0, "n": 1},
    ]
    assert output(store, result.run_id, "c")["stats"]["quarantined"] == 1  # 3.5 > le 3
    with sqlite3.connect(tmp_path / "out.db") as db:
        assert db.execute("select region, amount from t").fetchall() == [("b", 3.0)]
    assert output(store, result.run_id, "r")["snapshot"]["metrics"]["top"]["value"] == 3.5
