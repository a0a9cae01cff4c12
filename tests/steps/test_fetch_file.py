"""fetch.file against real files written by the tests."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from tests.conftest import policy


def fetch(path, **params):
    return {"id": "f", "type": "fetch.file", "params": {"path": str(path), **params}}


def output(store, run_id):
    from engine.artifacts import ArtifactStore
    from engine.outputs import decode

    (row,) = [r for r in store.get_steps(run_id) if r["step_id"] == "f"]
    return decode(json.loads(row["output_json"]), ArtifactStore(store.state_dir / "artifacts"))


@pytest.fixture
def files(tmp_path):
    rows = [{"id": 1, "name": "a", "amount": 1.5}, {"id": 2, "name": "b", "amount": 2.0}]
    (tmp_path / "rows.csv").write_text("id,name,amount\n1,a,1.5\n2,b,2.0\n")
    (tmp_path / "rows.json").write_text(json.dumps({"data": {"items": rows}}))
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pd.DataFrame(rows).to_parquet(tmp_path / "rows.parquet")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "extra"),
    [("rows.csv", {}), ("rows.json", {"record_path": "data.items"}), ("rows.jsonl", {}), ("rows.parquet", {})],
    ids=["csv", "json", "jsonl", "parquet"],
)
def test_reads_each_format_into_a_dataframe(run, store, files, name, extra):
    result = run(policy(fetch(files / name, **extra)))
    assert result.status == "SUCCESS", result.steps[0].error
    out = output(store, result.run_id)
    assert list(out["data"].columns) == ["id", "name", "amount"]
    assert out["data"]["amount"].tolist() == [1.5, 2.0]
    assert out["content_hash"] == hashlib.sha256((files / name).read_bytes()).hexdigest()
    assert out["url"] == (files / name).resolve().as_uri()
    assert out["status_code"] is None and out["cache_status"] == "none" and out["pages"] == 1


def test_relative_path_is_taken_from_the_policy_folder(run, store, files):
    result = run(policy(fetch("rows.csv", columns=["name"])))
    assert result.status == "SUCCESS", result.steps[0].error
    assert output(store, result.run_id)["data"].to_dict("records") == [{"name": "a"}, {"name": "b"}]


def test_as_json_returns_the_document(run, store, files):
    result = run(policy(fetch(files / "rows.json", **{"as": "json"})))
    assert output(store, result.run_id)["data"]["data"]["items"][0] == {"id": 1, "name": "a", "amount": 1.5}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        (
            {"path": "nope.csv"},
            "file not found: {dir}/nope.csv (params.path 'nope.csv', relative to the policy's folder unless absolute)",
        ),
        (
            {"path": "rows.txt"},
            "cannot tell the format of 'rows.txt' from its suffix: set params.format (csv, json, jsonl or parquet)",
        ),
        (
            {"path": "rows.json"},
            "a DataFrame needs a list of objects; the JSON is a dict (set record_path to the list inside it)",
        ),
        ({"path": "rows.csv", "columns": ["zzz"]}, "columns ['zzz'] are not in the file (it has: id, name, amount)"),
        ({"path": "rows.csv", "as": "json"}, "'as: json' needs a json or jsonl file, not csv"),
        ({"path": "rows.json", "record_path": "data.nope"}, "record_path 'data.nope': 'nope' not found at data"),
    ],
    ids=["missing", "unknown-suffix", "not-records", "missing-column", "as-json-csv", "bad-record-path"],
)
def test_clear_errors(run, files, params, error):
    (files / "rows.txt").write_text("x")
    result = run(policy({"id": "f", "type": "fetch.file", "params": params}))
    assert result.status == "FAILED"
    assert result.steps[0].error == error.format(dir=files)


def test_unknown_param_is_a_validation_error(run, files):
    from engine import PolicyError

    with pytest.raises(PolicyError, match="unknown field 'pth'"):
        run(policy({"id": "f", "type": "fetch.file", "params": {"pth": "x.csv"}}))


def test_downstream_refs_into_the_envelope_are_checked(run, files):
    from engine import PolicyError

    doc = policy(fetch("rows.csv"), {"id": "v", "type": "core.value", "params": {"value": {"ref": "ctx.f.dta"}}})
    with pytest.raises(PolicyError, match="has no output field 'dta'"):
        run(doc)


def test_text_columns_keep_money_exact_through_a_decimal_sum(run, store, tmp_path):
    """CSV numbers become floats; read as text, then cast to decimal, money stays exact (scale too)."""
    import json as _json
    from decimal import Decimal

    from engine.artifacts import ArtifactStore
    from engine.outputs import decode
    from tests.conftest import policy

    (tmp_path / "money.csv").write_text("region,amount\nemea,12345678901234567.89\nemea,0.10\napac,1.10\n")
    doc = policy(
        {"id": "raw", "type": "fetch.file", "params": {"path": "money.csv", "text_columns": ["amount"]}},
        {
            "id": "sums",
            "type": "transform.frame",
            "params": {
                "input": {"ref": "ctx.raw.data"},
                "ops": [
                    {"op": "cast", "columns": {"amount": "decimal"}},
                    {"op": "group_by", "keys": ["region"], "aggregate": {"total": {"column": "amount", "fn": "sum"}}},
                    {"op": "sort", "by": ["region"]},
                ],
            },
        },
    )
    result = run(doc)
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    (row,) = [r for r in store.get_steps(result.run_id) if r["step_id"] == "sums"]
    frame = decode(_json.loads(row["output_json"]), ArtifactStore(store.state_dir / "artifacts"))["data"]
    assert frame["total"].tolist() == [Decimal("1.10"), Decimal("12345678901234567.99")]
    assert [str(v) for v in frame["total"]] == ["1.10", "12345678901234567.99"]
