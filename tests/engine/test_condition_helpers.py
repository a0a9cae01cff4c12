"""``engine.check_condition`` and ``engine.evaluate_condition``: the condition DSL over a plugin's own data."""

from __future__ import annotations

import pytest

from engine import ConditionError, check_condition, evaluate_condition

DATA = {"metrics": {"revenue": {"value": 120.5, "delta": -3}}, "rows": [1, 2]}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"ref": "ctx.metrics.revenue.value", "op": "gt", "value": 100}, True),
        ({"ref": "ctx.metrics.revenue.delta", "op": "ge", "value": 0}, False),
        ({"ref": "ctx.metrics.revenue.delta", "op": "lt", "value": {"ref": "ctx.metrics.revenue.value"}}, True),
        ({"ref": "ctx.metrics.cost", "op": "exists"}, False),
        ({"all": [{"ref": "ctx.rows", "op": "not_empty"}, {"not": True}]}, False),
    ],
    ids=["gt", "ge-false", "ref-value", "missing-exists", "all-not"],
)
def test_evaluate_condition_reads_the_mapping(condition, expected):
    assert evaluate_condition(condition, DATA) is expected


def test_evaluate_condition_names_where_a_missing_path_is():
    with pytest.raises(ConditionError) as exc:
        evaluate_condition({"ref": "ctx.metrics.cost", "op": "gt", "value": 1}, DATA, "/steps/2/params/x")
    assert str(exc.value) == (
        "condition at /steps/2/params/x: ref ctx.metrics.cost not found "
        "(use op 'exists' or 'is_empty' to test for a path that may be missing)"
    )


def test_check_condition_returns_every_problem_with_its_pointer():
    problems = check_condition({"ref": "metrics.x", "op": "equals", "value": 1}, "/sections/0/condition")
    assert [(p.pointer, p.message) for p in problems] == [
        ("/sections/0/condition/ref", "ref 'metrics.x' must start with 'ctx.' (e.g. 'ctx.metrics.x')"),
        ("/sections/0/condition/op", "unknown op 'equals'"),
    ]
    assert check_condition(True) == []
