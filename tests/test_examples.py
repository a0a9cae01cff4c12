"""Every example policy runs, through the real CLI, on a copy of policies/examples/."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "policies" / "examples").glob("*.json"))


@pytest.fixture
def examples(tmp_path):
    target = tmp_path / "examples"
    shutil.copytree(ROOT / "policies" / "examples", target, ignore=shutil.ignore_patterns("out"))
    return target


@pytest.mark.parametrize("name", [p.name for p in EXAMPLES])
def test_example_runs(cli, examples, name):
    result = cli("run", str(examples / name), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "SUCCESS"


def test_orders_pipeline_quarantines_and_merges_idempotently(cli, examples, state_dir):
    import sqlite3

    for expected in ({"inserted": 60, "updated": 0, "unchanged": 0}, {"inserted": 0, "updated": 0, "unchanged": 60}):
        run_id = json.loads(cli("run", str(examples / "orders_pipeline.json"), "--json").stdout)["run_id"]
        with sqlite3.connect(state_dir / "engine.db") as con:
            (text,) = con.execute(
                "select output_json from step_runs where run_id = ? and step_id = 'summary'", (run_id,)
            ).fetchone()
        summary = json.loads(text)
        assert (summary["valid"], summary["quarantined"], summary["regions"]) == (60, 2, 3)
        assert summary["stored"] == expected
