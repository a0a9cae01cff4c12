"""transform.validate: the pandera gate in fail and quarantine modes, on real frames."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from engine.artifacts import ArtifactStore
from engine.outputs import decode
from tests.conftest import policy

ROWS = [
    {"id": 1, "amount": "1.50", "region": "emea"},
    {"id": 2, "amount": "x", "region": "apac"},
    {"id": 3, "amount": "3", "region": "mars"},
    {"id": 4, "amount": None, "region": "emea"},
    {"id": 5, "amount": "12", "region": "emea"},
    {"id": 6, "amount": "2.25", "region": "apac"},
]
COLUMNS = {
    "id": {"dtype": "int", "unique": True},
    "amount": {"dtype": "decimal", "checks": [{"in_range": [0, 10]}]},
    "region": {"dtype": "str", "checks": [{"isin": ["emea", "apac"]}, {"str_length": [2, 10]}]},
}


def gate(rows=ROWS, **params):
    return policy(
        {"id": "src", "type": "core.value", "params": {"value": rows}},
        {
            "id": "v",
            "type": "transform.validate",
            "params": {"input": {"ref": "ctx.src"}, "columns": COLUMNS, **params},
        },
    )


def output(store, run_id):
    (row,) = [r for r in store.get_steps(run_id) if r["step_id"] == "v"]
    return decode(json.loads(row["output_json"]), ArtifactStore(store.state_dir / "artifacts"))


def test_fail_mode_lists_the_failure_cases(run):
    result = run(gate())
    assert result.status == "FAILED"
    assert result.steps[1].error == (
        "4 of 6 rows fail validation: row 1: amount: not decimal ('x'); "
        "row 2: region: isin(['emea', 'apac']) ('mars'); row 3: amount: not_nullable (None); "
        "row 4: amount: in_range(0, 10) (Decimal('12'))"
    )


def test_fail_mode_passes_clean_data_in_the_declared_types(run, store):
    result = run(gate([ROWS[0], ROWS[5]]))
    assert result.status == "SUCCESS", result.steps[1].error
    out = output(store, result.run_id)
    assert out["valid"].to_dict("records") == [
        {"id": 1, "amount": Decimal("1.50"), "region": "emea"},
        {"id": 6, "amount": Decimal("2.25"), "region": "apac"},
    ]
    assert out["stats"] == {"rows_in": 2, "valid": 2, "quarantined": 0, "failures_by_check": {}}


def test_quarantine_splits_rows_with_a_reason_each(run, store):
    result = run(gate(mode="quarantine", min_valid_ratio=0.3))
    assert result.status == "SUCCESS", result.steps[1].error
    out = output(store, result.run_id)
    assert out["valid"]["id"].tolist() == [1, 6]
    assert out["quarantine"][["_row", "id", "_reason"]].to_dict("records") == [
        {"_row": 1, "id": 2, "_reason": "amount: not decimal ('x')"},
        {"_row": 2, "id": 3, "_reason": "region: isin(['emea', 'apac']) ('mars')"},
        {"_row": 3, "id": 4, "_reason": "amount: not_nullable (None)"},
        {"_row": 4, "id": 5, "_reason": "amount: in_range(0, 10) (Decimal('12'))"},
    ]
    assert out["stats"] == {
        "rows_in": 6,
        "valid": 2,
        "quarantined": 4,
        "failures_by_check": {
            "amount: dtype decimal": 1,
            "amount: in_range(0, 10)": 1,
            "amount: not_nullable": 1,
            "region: isin(['emea', 'apac'])": 1,
        },
    }


def test_quarantine_fails_below_the_valid_ratio(run):
    result = run(gate(mode="quarantine"))  # default min_valid_ratio 0.8; 2 of 6 are valid
    assert result.status == "FAILED"
    assert result.steps[1].error.startswith("only 2 of 6 rows are valid (33%), below min_valid_ratio 80%: ")


def test_frame_level_unique_keys(run):
    rows = [{"id": 1, "amount": "1", "region": "emea"}, {"id": 1, "amount": "2", "region": "emea"}]
    result = run(gate(rows, unique=["id", "region"]))
    assert result.status == "FAILED"
    assert "row 0: id: unique (1)" in result.steps[1].error and "row 1: id: unique (1)" in result.steps[1].error


def test_missing_and_undeclared_columns_fail_the_step(run):
    result = run(gate([{"id": 1, "region": "emea", "extra": 1}], strict=True))
    assert result.steps[1].error == (
        "missing columns ['amount']; undeclared columns ['extra'] (strict) (the frame has: id, region, extra)"
    )


def test_a_check_sets_exactly_one_rule(run):
    from engine import PolicyError

    columns = {"id": {"checks": [{"ge": 1, "le": 3}]}}
    with pytest.raises(PolicyError, match="a check sets exactly one of"):
        run(gate(columns=columns))
