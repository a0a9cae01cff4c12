"""transform.frame: each op on real DataFrames, stored and read back through the engine."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from engine.artifacts import ArtifactStore
from engine.outputs import decode
from steps.transform.expressions import ExpressionError, compile_expression
from tests.conftest import policy

ORDERS = [
    {"id": 1, "region": "emea", "amount": "10.10", "qty": 2, "note": None},
    {"id": 2, "region": "apac", "amount": "20.20", "qty": 1, "note": "rush"},
    {"id": 3, "region": "emea", "amount": "0.30", "qty": 5, "note": ""},
    {"id": 3, "region": "emea", "amount": "0.30", "qty": 5, "note": ""},
]


def transform(*ops, input=None):
    return policy(
        {"id": "src", "type": "core.value", "params": {"value": ORDERS}},
        {"id": "t", "type": "transform.frame", "params": {"input": input or {"ref": "ctx.src"}, "ops": list(ops)}},
    )


def result_frame(store, run_id):
    (row,) = [r for r in store.get_steps(run_id) if r["step_id"] == "t"]
    return decode(json.loads(row["output_json"]), ArtifactStore(store.state_dir / "artifacts"))


def records(run, store, *ops):
    result = run(transform(*ops))
    assert result.status == "SUCCESS", result.steps[1].error
    out = result_frame(store, result.run_id)
    assert out["row_count"] == len(out["data"])
    return out["data"].to_dict("records")


def test_select_rename_sort_limit(run, store):
    rows = records(
        run,
        store,
        {"op": "select", "columns": ["id", "qty"]},
        {"op": "rename", "columns": {"qty": "n"}},
        {"op": "sort", "by": ["n"], "descending": True},
        {"op": "limit", "n": 2},
    )
    assert rows == [{"id": 3, "n": 5}, {"id": 3, "n": 5}]


def test_map_fields_keeps_only_mapped_columns(run, store):
    rows = records(
        run, store, {"op": "map_fields", "mapping": {"id": "order_id", "region": "market"}}, {"op": "limit", "n": 1}
    )
    assert rows == [{"order_id": 1, "market": "emea"}]


def test_decimal_money_sums_exactly_and_survives_parquet(run, store):
    rows = records(
        run,
        store,
        {"op": "cast", "columns": {"amount": "decimal"}},
        {"op": "derive", "column": "total", "expression": "amount * qty"},
        {
            "op": "group_by",
            "keys": ["region"],
            "aggregate": {"revenue": {"column": "total", "fn": "sum"}, "orders": {"column": "id", "fn": "count"}},
        },
    )
    assert rows == [
        {"region": "apac", "revenue": Decimal("20.20"), "orders": 1},
        {"region": "emea", "revenue": Decimal("23.20"), "orders": 3},
    ]
    assert sum(Decimal(r["amount"]) * r["qty"] for r in ORDERS) == Decimal("43.40")  # the exact figure
    assert 0.1 + 0.2 != 0.3  # why floats are not used for money


def test_filter_with_the_condition_dsl_on_columns(run, store):
    keep = {"all": [{"field": "region", "op": "eq", "value": "emea"}, {"not": {"field": "note", "op": "is_empty"}}]}
    assert records(run, store, {"op": "filter", "condition": keep}) == []
    rows = records(
        run,
        store,
        {
            "op": "filter",
            "condition": {
                "any": [{"field": "qty", "op": "ge", "value": 5}, {"field": "note", "op": "contains", "value": "ru"}]
            },
        },
        {"op": "select", "columns": ["id"]},
    )
    assert rows == [{"id": 2}, {"id": 3}, {"id": 3}]
    assert records(
        run,
        store,
        {"op": "filter", "condition": {"field": "id", "op": "in", "value": [1, 2]}},
        {"op": "select", "columns": ["id"]},
    ) == [{"id": 1}, {"id": 2}]


def test_dedupe_fill_null_and_derive(run, store):
    rows = records(
        run,
        store,
        {"op": "dedupe", "keys": ["id"], "keep": "last"},
        {"op": "fill_null", "columns": {"note": "-"}},
        {"op": "derive", "column": "big", "expression": "qty >= 2 and id != 3"},
        {"op": "select", "columns": ["id", "note", "big"]},
    )
    assert rows == [
        {"id": 1, "note": "-", "big": True},
        {"id": 2, "note": "rush", "big": False},
        {"id": 3, "note": "", "big": False},
    ]


def test_join_and_pivot(run, store):
    targets = [{"region": "emea", "target": 10}, {"region": "apac", "target": 30}]
    rows = records(
        run,
        store,
        {"op": "dedupe"},
        {"op": "join", "right": targets, "on": ["region"], "how": "left"},
        {"op": "pivot", "index": ["region"], "columns": "id", "values": "qty"},
    )
    assert [r["region"] for r in rows] == ["apac", "emea"]
    assert rows[1]["1"] == 2 and rows[1]["3"] == 5


@pytest.mark.parametrize(
    ("op", "error"),
    [
        (
            {"op": "select", "columns": ["id", "nope"]},
            "op 0 (select): column nope not found (columns: id, region, amount, qty, note) at /steps/1/params/ops/0",
        ),
        (
            {"op": "derive", "column": "x", "expression": "nope * 2"},
            "op 0 (derive): unknown column 'nope' (columns: id, region, amount, qty, note) at /steps/1/params/ops/0",
        ),
        (
            {"op": "filter", "condition": {"field": "zz", "op": "eq", "value": 1}},
            "op 0 (filter): condition: column 'zz' not found (columns: id, region, amount, qty, note) "
            "at /steps/1/params/ops/0",
        ),
        (
            {"op": "cast", "columns": {"region": "decimal"}},
            "op 0 (cast): cannot cast 'emea' to decimal at /steps/1/params/ops/0",
        ),
    ],
    ids=["select-missing", "derive-missing", "filter-missing", "cast-bad"],
)
def test_errors_name_the_op_and_the_columns(run, op, error):
    result = run(transform(op))
    assert result.status == "FAILED"
    assert result.steps[1].error == error


@pytest.mark.parametrize(
    ("op", "problem"),
    [
        (
            {"op": "derive", "column": "x", "expression": "__import__('os').system('true')"},
            "/steps/1/params/ops/0/expression: only round, abs, min, max may be called, "
            "not \"__import__('os').system\"",
        ),
        (
            {"op": "filter", "condition": {"field": "qty", "op": "gt", "vlaue": 0}},
            "/steps/1/params/ops/0/condition/vlaue: unknown key 'vlaue' in a row comparison (did you mean 'value'?)",
        ),
        (
            {"op": "filter", "condition": {"any": [{"field": "qty", "op": "bigger", "value": 1}]}},
            "/steps/1/params/ops/0/condition/any/0/op: unknown op 'bigger' "
            "(ops: eq ne lt le gt ge in not_in contains exists is_empty not_empty)",
        ),
    ],
    ids=["derive-unsafe", "filter-misspelt-key", "filter-unknown-op"],
)
def test_expressions_and_filters_are_checked_by_validate(op, problem):
    from engine import EngineConfig, PolicyError
    from engine.validate import validate_document

    with pytest.raises(PolicyError) as info:
        validate_document(transform(op), config=EngineConfig({}, environ={}))
    assert problem in [str(p) for p in info.value.problems]


def test_unknown_op_is_a_validation_error(run):
    from engine import PolicyError

    with pytest.raises(PolicyError, match="/steps/1/params/ops/0"):
        run(transform({"op": "explode", "column": "x"}))


@pytest.mark.parametrize(
    "expression",
    ["a.__class__", "a[0]", "lambda: 1", "open('x')", "[x for x in a]", "10 ** 10 ** 10", "f'{a}'", "a if a else 1"],
)
def test_unsafe_expressions_are_refused(expression):
    with pytest.raises(ExpressionError):
        compile_expression(expression, ["a"])


def test_backticks_name_columns_with_spaces():
    import pandas as pd

    from steps.transform.expressions import evaluate

    frame = pd.DataFrame({"unit price": [Decimal("1.10"), Decimal("2.25")], "qty": [3, 2]})
    assert list(evaluate(compile_expression("round(`unit price` * qty, 1)", list(frame.columns)), frame)) == [
        Decimal("3.3"),
        Decimal("4.5"),
    ]
