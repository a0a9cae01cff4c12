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
        "4 of 6 rows fail validation: row 1: amount must be a decimal number (got 'x'); "
        "row 2: region must be one of 'emea', 'apac' (got 'mars'); row 3: amount is missing; "
        "row 4: amount must be between 0 and 10 (got 12)"
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
        {"_row": 1, "id": 2, "_reason": "amount must be a decimal number (got 'x')"},
        {"_row": 2, "id": 3, "_reason": "region must be one of 'emea', 'apac' (got 'mars')"},
        {"_row": 3, "id": 4, "_reason": "amount is missing"},
        {"_row": 4, "id": 5, "_reason": "amount must be between 0 and 10 (got 12)"},
    ]
    assert out["stats"] == {
        "rows_in": 6,
        "valid": 2,
        "quarantined": 4,
        "failures_by_check": {
            "amount is missing": 1,
            "amount must be a decimal number": 1,
            "amount must be between 0 and 10": 1,
            "region must be one of 'emea', 'apac'": 1,
        },
    }


def test_quarantine_fails_below_the_valid_ratio(run):
    result = run(gate(mode="quarantine"))  # default min_valid_ratio 0.8; 2 of 6 are valid
    assert result.status == "FAILED"
    assert result.steps[1].error == (
        "only 2 of 6 rows are valid (33%), below min_valid_ratio 80%: amount is missing (1 row), "
        "amount must be a decimal number (1 row), amount must be between 0 and 10 (1 row), "
        "region must be one of 'emea', 'apac' (1 row)"
    )


def test_frame_level_unique_keys(run):
    rows = [{"id": 1, "amount": "1", "region": "emea"}, {"id": 1, "amount": "2", "region": "emea"}]
    result = run(gate(rows, unique=["id", "region"]))
    assert result.status == "FAILED"
    assert result.steps[1].error == (
        "1 of 2 rows fail validation: row 1: id is a duplicate (got 1, first seen in row 0); "
        "row 1: id + region is a duplicate (got (1, 'emea'), first seen in row 0)"
    )


def test_missing_and_undeclared_columns_fail_the_step(run):
    result = run(gate([{"id": 1, "region": "emea", "extra": 1}], strict=True))
    assert result.steps[1].error == (
        "missing columns ['amount']; undeclared columns ['extra'] (strict) (the frame has: id, region, extra)"
    )


# -- duplicates: keep first, last or none ----------------------------------------------------------

ORDERS = [
    {"order_id": 7, "amount": "10.00"},
    {"order_id": 8, "amount": "5.00"},
    {"order_id": 7, "amount": "12.00"},
    {"order_id": 7, "amount": "11.00"},
]


def orders_gate(rows=ORDERS, **params):
    return policy(
        {"id": "src", "type": "core.value", "params": {"value": rows}},
        {
            "id": "v",
            "type": "transform.validate",
            "params": {
                "input": {"ref": "ctx.src"},
                "mode": "quarantine",
                "min_valid_ratio": 0,
                "unique": ["order_id"],
                "columns": {"order_id": {"dtype": "int"}, "amount": {"dtype": "decimal", "checks": [{"ge": 0}]}},
                **params,
            },
        },
    )


@pytest.mark.parametrize(
    ("keep", "valid", "reasons"),
    [
        pytest.param(
            None,
            [7, 8],
            {
                2: "order_id is a duplicate (got 7, first seen in row 0)",
                3: "order_id is a duplicate (got 7, first seen in row 0)",
            },
            id="default-first",
        ),
        pytest.param(
            "last",
            [8, 7],
            {
                0: "order_id is a duplicate (got 7, last seen in row 3)",
                2: "order_id is a duplicate (got 7, last seen in row 3)",
            },
            id="last",
        ),
        pytest.param(
            "none",
            [8],
            {
                0: "order_id is a duplicate (got 7, also in rows 2, 3)",
                2: "order_id is a duplicate (got 7, also in rows 0, 3)",
                3: "order_id is a duplicate (got 7, also in rows 0, 2)",
            },
            id="none",
        ),
    ],
)
def test_unique_keeps_the_first_occurrence_unless_told_otherwise(run, store, keep, valid, reasons):
    result = run(orders_gate(**({"keep": keep} if keep else {})))
    assert result.status == "SUCCESS", result.steps[1].error
    out = output(store, result.run_id)
    assert out["valid"]["order_id"].tolist() == valid
    assert dict(zip(out["quarantine"]["_row"], out["quarantine"]["_reason"], strict=True)) == reasons
    assert out["stats"]["failures_by_check"] == {"order_id is a duplicate": len(reasons)}


def test_the_first_occurrence_that_passes_the_other_checks_is_kept(run, store):
    rows = [{"order_id": 7, "amount": "-1"}, {"order_id": 7, "amount": "3"}, {"order_id": 7, "amount": "4"}]
    result = run(orders_gate(rows))
    out = output(store, result.run_id)
    assert out["valid"].to_dict("records") == [{"order_id": 7, "amount": Decimal("3")}]
    assert out["quarantine"][["_row", "_reason"]].to_dict("records") == [
        {"_row": 0, "_reason": "amount must be >= 0 (got -1)"},
        {"_row": 2, "_reason": "order_id is a duplicate (got 7, first seen in row 1)"},
    ]


def test_keep_none_counts_occurrences_that_fail_other_checks(run, store):
    rows = [{"order_id": 7, "amount": "-1"}, {"order_id": 7, "amount": "3"}]
    result = run(orders_gate(rows, keep="none"))
    out = output(store, result.run_id)
    assert out["quarantine"]["_reason"].tolist() == [
        "amount must be >= 0 (got -1); order_id is a duplicate (got 7, also in row 1)",
        "order_id is a duplicate (got 7, also in row 0)",
    ]


# -- checks and the reasons they give ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "value", "reason"),
    [
        pytest.param({"dtype": "decimal", "checks": [{"ge": 0}]}, "-120.00", "x must be >= 0 (got -120.00)", id="ge"),
        pytest.param({"dtype": "int", "checks": [{"gt": 0}]}, 0, "x must be > 0 (got 0)", id="gt"),
        pytest.param({"dtype": "float", "checks": [{"le": 100}]}, 100.5, "x must be <= 100 (got 100.5)", id="le"),
        pytest.param({"dtype": "int", "checks": [{"lt": 1}]}, 1, "x must be < 1 (got 1)", id="lt"),
        pytest.param({"dtype": "str", "checks": [{"eq": "ok"}]}, "ko", "x must be 'ok' (got 'ko')", id="eq"),
        pytest.param(
            {"dtype": "str", "checks": [{"ne": "void"}]}, "void", "x must not be 'void' (got 'void')", id="ne"
        ),
        pytest.param(
            {"dtype": "int", "checks": [{"in_range": [1, 12]}]},
            13,
            "x must be between 1 and 12 (got 13)",
            id="in_range",
        ),
        pytest.param(
            {"checks": [{"isin": ["emea", "apac"]}]}, "mars", "x must be one of 'emea', 'apac' (got 'mars')", id="isin"
        ),
        pytest.param(
            {"checks": [{"isin": list(range(12))}]},
            12,
            "x must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more (got 12)",
            id="isin-long",
        ),
        pytest.param(
            {"dtype": "str", "checks": [{"str_matches": "^[A-Z]{3}$"}]},
            "eur",
            "x must match the pattern ^[A-Z]{3}$ (got 'eur')",
            id="str_matches",
        ),
        pytest.param(
            {"checks": [{"str_length": [2, 3]}]}, "abcd", "x must be 2 to 3 characters long (got 'abcd')", id="length"
        ),
        pytest.param(
            {"checks": [{"str_length": [2, None]}]}, "a", "x must be at least 2 characters long (got 'a')", id="min-len"
        ),
        pytest.param(
            {"checks": [{"str_length": [None, 1]}]},
            "ab",
            "x must be at most 1 characters long (got 'ab')",
            id="max-len",
        ),
        pytest.param({}, None, "x is missing", id="not-null"),
        pytest.param({"dtype": "int"}, "1.5", "x must be a whole number (got '1.5')", id="int"),
        pytest.param({"dtype": "float"}, "many", "x must be a number (got 'many')", id="float"),
        pytest.param({"dtype": "bool"}, "maybe", "x must be true or false (got 'maybe')", id="bool"),
        pytest.param({"dtype": "datetime"}, "soon", "x must be a date and time (got 'soon')", id="datetime"),
        pytest.param({"dtype": "date"}, "2026-13-01", "x must be a date (got '2026-13-01')", id="date"),
        pytest.param({"dtype": "decimal"}, "1,5", "x must be a decimal number (got '1,5')", id="decimal"),
    ],
)
def test_each_failure_has_a_reason_a_reader_understands(run, store, rule, value, reason):
    doc = policy(
        {"id": "src", "type": "core.value", "params": {"value": [{"x": value}]}},
        {
            "id": "v",
            "type": "transform.validate",
            "params": {"input": {"ref": "ctx.src"}, "mode": "quarantine", "min_valid_ratio": 0, "columns": {"x": rule}},
        },
    )
    result = run(doc)
    assert result.status == "SUCCESS", result.steps[1].error
    out = output(store, result.run_id)
    assert out["quarantine"]["_reason"].tolist() == [reason]
    assert out["stats"]["failures_by_check"] == {reason.split(" (got ")[0]: 1}


@pytest.mark.parametrize(
    "checks",
    [
        pytest.param([{"ge": 0, "le": 100}], id="one-object-two-keys"),
        pytest.param([{"ge": 0}, {"le": 100}], id="one-key-each"),
        pytest.param({"ge": 0, "le": 100}, id="checks-as-an-object"),
    ],
)
def test_a_check_object_may_set_several_checks(run, store, checks):
    rows = [{"pct": "-1"}, {"pct": "50"}, {"pct": "101"}]
    doc = policy(
        {"id": "src", "type": "core.value", "params": {"value": rows}},
        {
            "id": "v",
            "type": "transform.validate",
            "params": {
                "input": {"ref": "ctx.src"},
                "mode": "quarantine",
                "min_valid_ratio": 0,
                "columns": {"pct": {"dtype": "decimal", "checks": checks}},
            },
        },
    )
    result = run(doc)
    assert result.status == "SUCCESS", result.steps[1].error
    out = output(store, result.run_id)
    assert out["valid"]["pct"].tolist() == [Decimal("50")]
    assert out["quarantine"]["_reason"].tolist() == ["pct must be >= 0 (got -1)", "pct must be <= 100 (got 101)"]


@pytest.mark.parametrize(
    ("checks", "pointer", "message"),
    [
        pytest.param(
            [{}],
            "/steps/1/params/columns/id/checks/0",
            "a check needs at least one of ge, gt, le, lt, eq, ne, in_range, isin, str_matches, str_length",
            id="empty-check",
        ),
        pytest.param(
            [{"ge": 0, "str_length": [None, None]}],
            "/steps/1/params/columns/id/checks/0",
            "str_length needs a minimum or a maximum, e.g. [1, null]",
            id="open-length",
        ),
        pytest.param(
            {"ge": 0, "isin": "emea"},
            "/steps/1/params/columns/id/checks/isin",
            "must be a list (got 'emea')",
            id="object-form-points-at-the-key",
        ),
    ],
)
def test_check_problems_are_validation_errors(checks, pointer, message):
    from engine import PolicyError
    from engine.validate import validate_document

    with pytest.raises(PolicyError) as info:
        validate_document(gate(columns={"id": {"checks": checks}}))
    assert [(p.pointer, p.message) for p in info.value.problems] == [(pointer, message)]


def test_a_check_that_cannot_apply_to_a_column_names_it(run):
    doc = gate([{"id": 1, "amount": "1", "region": "emea"}], columns={"region": {"checks": [{"ge": 0}]}})
    result = run(doc)
    assert result.steps[1].error == (
        "region: cannot check 'must be >= 0' on this column: "
        'TypeError("Invalid comparison between dtype=str and int") '
        '(declare the column\'s dtype, e.g. "dtype": "decimal")'
    )
