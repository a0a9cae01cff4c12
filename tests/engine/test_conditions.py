"""engine.conditions: the JSON condition DSL, evaluation and parse problems (issue #3 §3)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.conditions import COMPARE_OPS, OPS, UNARY_OPS, ConditionParser, evaluate, parse_condition
from engine.errors import ConditionError
from tests.conftest import policy

OPS_HINT = "ops: eq ne lt le gt ge in not_in contains exists is_empty not_empty"


@pytest.fixture
def ctx():
    from engine.values import RunContext

    context = RunContext(
        {
            "n": 3,
            "s": "abc",
            "items": [1, 2],
            "none": None,
            "empty_list": [],
            "empty_str": "",
            "empty_obj": {},
            "obj": {"k": 1},
        },
        {"id": "r1"},
    )
    context.set_output("check", {"count": 0, "limit": 5, "tags": ["a", "b"]})
    context.set_null("skipped")
    return context


def cmp(
    ref: str,
    op: str,
    value: Any = ...,
) -> dict[str, Any]:
    cond: dict[str, Any] = {"ref": ref, "op": op}
    if value is not ...:
        cond["value"] = value
    return cond


def test_the_op_list_is_the_issues():
    assert OPS == ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "exists", "is_empty", "not_empty")
    assert set(COMPARE_OPS) | set(UNARY_OPS) == set(OPS)


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        pytest.param(cmp("ctx.params.n", "eq", 3), True, id="eq-true"),
        pytest.param(cmp("ctx.params.n", "eq", 4), False, id="eq-false"),
        pytest.param(cmp("ctx.params.n", "ne", 4), True, id="ne-true"),
        pytest.param(cmp("ctx.params.n", "ne", 3), False, id="ne-false"),
        pytest.param(cmp("ctx.params.n", "lt", 4), True, id="lt-true"),
        pytest.param(cmp("ctx.params.n", "lt", 3), False, id="lt-false"),
        pytest.param(cmp("ctx.params.n", "le", 3), True, id="le-true"),
        pytest.param(cmp("ctx.params.n", "le", 2), False, id="le-false"),
        pytest.param(cmp("ctx.params.n", "gt", 2), True, id="gt-true"),
        pytest.param(cmp("ctx.params.n", "gt", 3), False, id="gt-false"),
        pytest.param(cmp("ctx.params.n", "ge", 3), True, id="ge-true"),
        pytest.param(cmp("ctx.params.n", "ge", 4), False, id="ge-false"),
        pytest.param(cmp("ctx.params.s", "lt", "abd"), True, id="lt-strings"),
        pytest.param(cmp("ctx.params.n", "in", [1, 3]), True, id="in-true"),
        pytest.param(cmp("ctx.params.n", "in", [1, 2]), False, id="in-false"),
        pytest.param(cmp("ctx.params.s", "in", "xxabcxx"), True, id="in-substring"),
        pytest.param(cmp("ctx.params.n", "not_in", [1, 2]), True, id="not_in-true"),
        pytest.param(cmp("ctx.params.n", "not_in", [3]), False, id="not_in-false"),
        pytest.param(cmp("ctx.params.items", "contains", 2), True, id="contains-list"),
        pytest.param(cmp("ctx.params.items", "contains", 5), False, id="contains-list-false"),
        pytest.param(cmp("ctx.params.s", "contains", "bc"), True, id="contains-substring"),
        pytest.param(cmp("ctx.params.obj", "contains", "k"), True, id="contains-key"),
        pytest.param(cmp("ctx.params.none", "eq", None), True, id="eq-null"),
        pytest.param(cmp("ctx.check.tags.1", "eq", "b"), True, id="list-index-path"),
        pytest.param(cmp("ctx.params.n", "exists"), True, id="exists-true"),
        pytest.param(cmp("ctx.params.missing", "exists"), False, id="exists-missing-param"),
        pytest.param(cmp("ctx.nostep.a.b", "exists"), False, id="exists-missing-step"),
        pytest.param(cmp("ctx.check.tags.9", "exists"), False, id="exists-missing-index"),
        pytest.param(cmp("ctx.params.none", "exists"), False, id="exists-null"),
        pytest.param(cmp("ctx.params.missing", "is_empty"), True, id="is_empty-missing"),
        pytest.param(cmp("ctx.params.none", "is_empty"), True, id="is_empty-null"),
        pytest.param(cmp("ctx.params.empty_list", "is_empty"), True, id="is_empty-list"),
        pytest.param(cmp("ctx.params.empty_str", "is_empty"), True, id="is_empty-string"),
        pytest.param(cmp("ctx.params.empty_obj", "is_empty"), True, id="is_empty-object"),
        pytest.param(cmp("ctx.params.items", "is_empty"), False, id="is_empty-false"),
        pytest.param(cmp("ctx.params.n", "is_empty"), False, id="is_empty-number"),
        pytest.param(cmp("ctx.check.count", "is_empty"), False, id="is_empty-zero"),
        pytest.param(cmp("ctx.params.missing", "not_empty"), False, id="not_empty-missing"),
        pytest.param(cmp("ctx.params.items", "not_empty"), True, id="not_empty-list"),
        pytest.param(cmp("ctx.params.empty_str", "not_empty"), False, id="not_empty-empty"),
        pytest.param(cmp("ctx.skipped.count", "eq", None), True, id="skipped-step-is-null"),
        pytest.param(cmp("ctx.skipped.count", "is_empty"), True, id="skipped-step-is-empty"),
    ],
)
def test_comparison_ops(ctx, cond, expected):
    assert evaluate(cond, ctx) is expected


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        pytest.param(cmp("ctx.params.n", "lt", {"ref": "ctx.check.limit"}), True, id="lt-ref"),
        pytest.param(cmp("ctx.check.count", "eq", {"ref": "ctx.params.none"}), False, id="eq-ref-null"),
        pytest.param(cmp("ctx.params.n", "in", {"ref": "ctx.params.items"}), False, id="in-ref"),
        pytest.param(cmp("ctx.check.tags", "contains", {"ref": "ctx.params.s"}), False, id="contains-ref"),
    ],
)
def test_right_side_may_be_a_ref(ctx, cond, expected):
    assert evaluate(cond, ctx) is expected


def test_right_side_literal_that_looks_like_a_ref_path_is_a_string(ctx):
    assert evaluate(cmp("ctx.params.s", "eq", "ctx.params.s"), ctx) is False


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        pytest.param(True, True, id="true"),
        pytest.param(False, False, id="false"),
        pytest.param({"all": [True, cmp("ctx.params.n", "eq", 3)]}, True, id="all-true"),
        pytest.param({"all": [True, False]}, False, id="all-false"),
        pytest.param({"any": [False, cmp("ctx.params.n", "eq", 3)]}, True, id="any-true"),
        pytest.param({"any": [False, False]}, False, id="any-false"),
        pytest.param({"not": False}, True, id="not-false"),
        pytest.param({"not": cmp("ctx.params.n", "eq", 3)}, False, id="not-cmp"),
        pytest.param({"all": [{"any": [False, {"not": False}]}, {"not": {"all": [True, False]}}]}, True, id="nested"),
    ],
)
def test_combinators_and_literals(ctx, cond, expected):
    assert evaluate(cond, ctx) is expected


def test_all_and_any_stop_at_the_first_decisive_item(ctx):
    missing = cmp("ctx.params.missing", "eq", 1)  # would raise if evaluated
    assert evaluate({"any": [True, missing]}, ctx) is True
    assert evaluate({"all": [False, missing]}, ctx) is False


@pytest.mark.parametrize(
    ("cond", "message"),
    [
        pytest.param(
            cmp("ctx.params.missing", "eq", 1),
            "condition at /steps/0/skip_if: ref ctx.params.missing not "
            "found (use op 'exists' or 'is_empty' to test for a path that may be missing)",
            id="missing-left",
        ),
        pytest.param(
            cmp("ctx.check.tags.7", "ne", 1),
            "condition at /steps/0/skip_if: ref ctx.check.tags.7 not "
            "found (use op 'exists' or 'is_empty' to test for a path that may be missing)",
            id="missing-index",
        ),
        pytest.param(
            cmp("ctx.params.n", "lt", {"ref": "ctx.check.nope"}),
            "condition at /steps/0/skip_if: ref ctx.check.nope (the value) not found",
            id="missing-right",
        ),
        pytest.param(
            cmp("ctx.params.n", "lt", "x"),
            "condition at /steps/0/skip_if: cannot apply 'lt' to int 3 and str 'x'",
            id="lt-int-str",
        ),
        pytest.param(
            cmp("ctx.params.none", "gt", 1),
            "condition at /steps/0/skip_if: cannot apply 'gt' to NoneType None and int 1",
            id="gt-null",
        ),
        pytest.param(
            cmp("ctx.params.n", "in", 5),
            "condition at /steps/0/skip_if: cannot apply 'in' to int 3 and int 5",
            id="in-not-container",
        ),
        pytest.param(
            cmp("ctx.params.n", "contains", 1),
            "condition at /steps/0/skip_if: cannot apply 'contains' to int 3 and int 1",
            id="contains-int",
        ),
        pytest.param(
            cmp("ctx.params.s", "contains", 1),
            "condition at /steps/0/skip_if: cannot apply 'contains' to str 'abc' and int 1",
            id="contains-str-int",
        ),
        pytest.param(
            cmp("ctx.params.n", "ge", "y" * 50),
            "condition at /steps/0/skip_if: cannot apply 'ge' to int 3 and str '" + "y" * 36 + "...",
            id="long-value-shortened",
        ),
    ],
)
def test_evaluation_errors(ctx, cond, message):
    with pytest.raises(ConditionError) as info:
        evaluate(cond, ctx, "/steps/0/skip_if")
    assert str(info.value) == message
    assert info.value.retryable is False


def test_error_inside_a_combinator_names_the_inner_pointer(ctx):
    with pytest.raises(ConditionError) as info:
        evaluate({"all": [True, {"not": cmp("ctx.params.n", "lt", "x")}]}, ctx, "/steps/2/skip_if")
    assert str(info.value) == "condition at /steps/2/skip_if/all/1/not: cannot apply 'lt' to int 3 and str 'x'"


# -- parsing ------------------------------------------------------------------------------------


def parse_problems(raw: Any) -> list[tuple[str, str, str | None]]:
    parser = ConditionParser()
    assert parser.parse(raw, "/steps/0/skip_if") is None
    return [(p.pointer, p.message, p.hint) for p in parser.problems]


SHAPES = 'use true/false, {"ref", "op", "value"}, {"all": [...]}, {"any": [...]} or {"not": ...}'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            None, [("/steps/0/skip_if", "a condition must be an object or true/false, not null", None)], id="null"
        ),
        pytest.param(
            1, [("/steps/0/skip_if", "a condition must be an object or true/false, not a number", None)], id="number"
        ),
        pytest.param(
            "true",
            [("/steps/0/skip_if", "a condition must be an object or true/false, not a string", None)],
            id="string-true",
        ),
        pytest.param(
            [True], [("/steps/0/skip_if", "a condition must be an object or true/false, not a list", None)], id="list"
        ),
        pytest.param({}, [("/steps/0/skip_if", "not a condition (keys: none)", SHAPES)], id="empty-object"),
        pytest.param(
            {"al": [True]}, [("/steps/0/skip_if", "not a condition (keys: 'al')", "did you mean 'all'?")], id="near-all"
        ),
        pytest.param(
            {"all": []}, [("/steps/0/skip_if/all", "'all' takes a non-empty list of conditions", None)], id="all-empty"
        ),
        pytest.param(
            {"any": True},
            [("/steps/0/skip_if/any", "'any' takes a non-empty list of conditions", None)],
            id="any-not-list",
        ),
        pytest.param(
            {"all": [True], "any": [True]},
            [("/steps/0/skip_if", "'all' takes no other keys (found 'any')", None)],
            id="all-and-any",
        ),
        pytest.param(
            {"not": True, "x": 1},
            [("/steps/0/skip_if", "'not' takes no other keys", 'write {"not": CONDITION}')],
            id="not-extra",
        ),
        pytest.param(
            {"not": "x"},
            [("/steps/0/skip_if/not", "a condition must be an object or true/false, not a string", None)],
            id="not-bad-inner",
        ),
        pytest.param(
            cmp("ctx.a", "eq"),
            [("/steps/0/skip_if", "op 'eq' needs a 'value' (a literal or {\"ref\": ...})", None)],
            id="value-missing",
        ),
        pytest.param(
            cmp("ctx.a", "exists", 1),
            [("/steps/0/skip_if/value", "op 'exists' takes no 'value'", None)],
            id="unary-with-value",
        ),
        pytest.param(
            cmp("ctx.a", "equals", 1), [("/steps/0/skip_if/op", "unknown op 'equals'", OPS_HINT)], id="unknown-op"
        ),
        pytest.param(
            cmp("ctx.a", "not_emtpy"),
            [("/steps/0/skip_if/op", "unknown op 'not_emtpy'", "did you mean 'not_empty'?")],
            id="near-op",
        ),
        pytest.param(
            {"op": "eq", "value": 1},
            [("/steps/0/skip_if/ref", "missing 'ref'", 'a comparison starts with {"ref": "ctx.step.field", ...}')],
            id="ref-missing",
        ),
        pytest.param(
            cmp("x.y", "eq", 1),
            [("/steps/0/skip_if/ref", "ref 'x.y' must start with 'ctx.' (e.g. 'ctx.x.y')", None)],
            id="bad-ref",
        ),
        pytest.param(
            cmp("ctx.a", "eq", {"ref": "a.b"}),
            [("/steps/0/skip_if/value/ref", "ref 'a.b' must start with 'ctx.' (e.g. 'ctx.a.b')", None)],
            id="bad-right-ref",
        ),
        pytest.param(
            cmp("ctx.a", "eq", {"template": "{{ x }}"}),
            [("/steps/0/skip_if/value", 'a condition value is a literal or a {"ref": ...}', None)],
            id="template-on-right",
        ),
        pytest.param(
            {"ref": "ctx.a", "op": "eq", "value": 1, "vlaue": 2},
            [("/steps/0/skip_if/vlaue", "unknown key 'vlaue' in a comparison", "did you mean 'value'?")],
            id="unknown-key",
        ),
        pytest.param(
            {"any": [cmp("ctx.a", "bad"), {"nt": True}, True]},
            [
                ("/steps/0/skip_if/any/0/op", "unknown op 'bad'", OPS_HINT),
                ("/steps/0/skip_if/any/1", "not a condition (keys: 'nt')", "did you mean 'not'?"),
            ],
            id="every-problem-in-a-list",
        ),
    ],
)
def test_parse_problems_have_pointers(raw, expected):
    assert parse_problems(raw) == expected


def test_missing_op_hint_lists_the_ops():
    assert parse_problems({"ref": "ctx.a"}) == [("/steps/0/skip_if/op", "missing 'op'", OPS_HINT)]


def test_parse_condition_raises_with_every_problem():
    with pytest.raises(ConditionError) as info:
        parse_condition({"all": [cmp("ctx.a", "bad"), "x"]}, "/p")
    assert str(info.value) == (
        f"/p/all/0/op: unknown op 'bad' ({OPS_HINT}); "
        "/p/all/1: a condition must be an object or true/false, not a string"
    )


def test_refs_of_a_condition_with_pointers():
    cond = parse_condition(
        {"all": [cmp("ctx.a.x", "lt", {"ref": "ctx.b.y"}), {"not": cmp("ctx.params.p", "exists")}]}, "/s"
    )
    assert [(r.path, r.pointer) for r in cond.refs()] == [
        (("a", "x"), "/s/all/0/ref"),
        (("b", "y"), "/s/all/0/value/ref"),
        (("params", "p"), "/s/all/1/not/ref"),
    ]


# -- in a run ---------------------------------------------------------------------------------


def test_skip_if_refs_are_dependencies_and_evaluated_after_them(run):
    doc = policy(
        {"id": "gate", "type": "core.value", "skip_if": {"ref": "ctx.check.count", "op": "lt", "value": 1}},
        {"id": "check", "type": "test.sleep", "params": {"seconds": 0.05, "value": {"count": 0}}},
    )
    result = run(doc)
    assert [(s.id, s.status, s.skip_reason) for s in result.steps] == [
        ("gate", "SKIPPED", "skip_if: condition is true"),
        ("check", "SUCCESS", None),
    ]


def test_condition_error_at_run_time_fails_the_step(run):
    doc = policy(
        {"id": "check", "type": "core.value", "params": {"value": {"count": "many"}}},
        {"id": "gate", "type": "core.value", "skip_if": {"ref": "ctx.check.count", "op": "lt", "value": 1}},
        {"id": "after", "type": "core.value", "depends_on": ["gate"]},
    )
    result = run(doc)
    assert result.status == "FAILED"
    gate = result.steps[1]
    assert (gate.status, gate.error) == (
        "FAILED",
        "condition at /steps/1/skip_if: cannot apply 'lt' to str 'many' and int 1",
    )


def test_skip_if_on_a_missing_path_fails_the_step_naming_the_path(run):
    doc = policy(
        {"id": "check", "type": "core.value", "params": {"value": {}}},
        {
            "id": "gate",
            "type": "core.value",
            "skip_if": {"ref": "ctx.check.count", "op": "eq", "value": 0},
            "on_error": "log_and_continue",
        },
        {"id": "maybe", "type": "core.value", "skip_if": {"ref": "ctx.check.count", "op": "is_empty"}},
    )
    result = run(doc)
    assert result.status == "PARTIAL"
    assert [(s.id, s.status, s.error) for s in result.steps] == [
        ("check", "SUCCESS", None),
        (
            "gate",
            "FAILED",
            "condition at /steps/1/skip_if: ref ctx.check.count not found (use op 'exists' or "
            "'is_empty' to test for a path that may be missing)",
        ),
        ("maybe", "SKIPPED", None),
    ]


@pytest.mark.parametrize(
    ("condition", "status", "error"),
    [
        pytest.param(
            {"ref": "ctx.rows.n", "op": "ge", "value": {"ref": "ctx.params.min"}}, "SUCCESS", None, id="passes"
        ),
        pytest.param({"ref": "ctx.rows.n", "op": "gt", "value": 5}, "FAILED", "too few rows", id="fails"),
    ],
)
def test_core_assert_is_a_data_gate(run, condition, status, error):
    doc = policy(
        {"id": "rows", "type": "core.value", "params": {"value": {"n": 3}}},
        {
            "id": "gate",
            "type": "core.assert",
            "params": {"condition": condition, "message": "too few rows"},
            "on_error": "retry_then_fail",
            "retry": {"max_attempts": 3, "backoff_s": 0},
        },
        params={"min": {"type": "integer", "default": 2}},
    )
    result = run(doc)
    gate = result.steps[1]
    assert (result.status, gate.status, gate.error, gate.attempts) == (status, status, error, 1)
