"""engine.validate: every problem at once, each with its JSON pointer, message and hint (issue #3 §1, §2, §4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import PolicyError, Problem
from engine.params import check_params, coerce_param
from engine.policy import sha256_of
from engine.validate import load_document, validate_document, validate_file
from tests.conftest import policy

CYCLE_HINT = "remove one of these dependencies (depends_on, a ref or a template name)"
OPS_HINT = "ops: eq ne lt le gt ge in not_in contains exists is_empty not_empty"


def problems_of(doc: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    with pytest.raises(PolicyError) as info:
        validate_document(doc)
    return [(p.pointer, p.message, p.hint) for p in info.value.problems]


def value_step(sid: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "type": "core.value", "params": {"value": value}, **extra}


# -- valid documents ----------------------------------------------------------------------------


def test_minimal_policy_is_valid():
    valid = validate_document(policy(value_step("a", 1)))
    assert valid.id == "test"
    assert valid.main_ids == ["a"]
    assert valid.failure_ids == []
    assert valid.deps == {"a": []}


def test_full_policy_with_every_field_is_valid():
    doc = {
        "$schema": "../policy.schema.json",
        "schema_version": 1,
        "id": "daily-sales_2",
        "title": "Daily sales",
        "description": "Every field once.",
        "params": {
            "region": {"type": "string", "default": "eu", "description": "Where."},
            "limit": {"type": "integer", "default": 3},
            "ratio": {"type": "number", "default": 0.5},
            "strict": {"type": "boolean", "default": False},
            "opts": {"type": "object", "default": {}},
            "tags": {"type": "array", "default": []},
        },
        "defaults": {
            "timeout_s": 30,
            "on_error": "retry_then_fail",
            "retry": {"max_attempts": 2, "backoff_s": 0.5, "max_backoff_s": 5, "jitter": False},
        },
        "max_concurrency": 2,
        "timeout_s": 600,
        "schedule": {"cron": "0 6 * * *"},
        "retention": {"days": 30, "keep_latest_n_runs": 5},
        "steps": [
            value_step("fetch", {"rows": [{"amount": 1}]}, description="Fetch."),
            {
                "id": "check",
                "type": "core.assert",
                "depends_on": ["fetch"],
                "params": {"condition": {"ref": "ctx.fetch.rows", "op": "not_empty"}, "message": "no rows"},
                "on_error": "fail_pipeline",
                "retry": {"max_attempts": 1},
                "timeout_s": 5,
                "trigger_rule": "all_success",
            },
            value_step(
                "report",
                {"template": "{{ params.region }}: {{ fetch.rows | length }}"},
                skip_if={"ref": "ctx.params.strict", "op": "eq", "value": True},
                trigger_rule="all_done",
                on_error="log_and_continue",
            ),
        ],
        "on_failure": [value_step("alert", {"ref": "ctx.run.error"})],
    }
    valid = validate_document(doc)
    assert valid.main_ids == ["fetch", "check", "report"]
    assert valid.failure_ids == ["alert"]
    assert valid.deps == {"fetch": [], "check": ["fetch"], "report": ["fetch"], "alert": []}
    assert valid.hash == sha256_of(doc)


def test_validate_file_reads_the_file_and_remembers_its_path(write_policy):
    path = write_policy(policy(value_step("a", 1)))
    valid = validate_file(path)
    assert valid.path == path
    assert valid.document == json.loads(path.read_text())


# -- JSON syntax ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        pytest.param(
            '{\n  "schema_version": 1,\n  "id": "x",\n}',
            "invalid JSON: Expecting property name enclosed in double quotes",
            4,
            1,
            id="trailing-comma",
        ),
        pytest.param(
            '{"schema_version": 1\n "id": "x"}', "invalid JSON: Expecting ',' delimiter", 2, 2, id="missing-comma"
        ),
        pytest.param("", "invalid JSON: Expecting value", 1, 1, id="empty-file"),
        pytest.param('{"id": "x", "steps": [\n\n', "invalid JSON: Expecting value", 3, 1, id="truncated"),
    ],
)
def test_json_syntax_error_has_line_and_column(write_policy, text, message, line, column):
    path = write_policy(text)
    with pytest.raises(PolicyError) as info:
        validate_file(path)
    (problem,) = info.value.problems
    assert (problem.pointer, problem.message, problem.line, problem.column) == ("", message, line, column)
    assert str(info.value) == f"{path}: 1 problem\n  line {line}, column {column}: {message}"
    assert problem.to_dict() == {"pointer": "", "message": message, "hint": None, "line": line, "column": column}


def test_document_that_is_not_an_object():
    with pytest.raises(PolicyError) as info:
        load_document("[1, 2]", "p.json")
    assert str(info.value) == "p.json: 1 problem\n  /: a policy must be a JSON object (start the file with {)"


def test_missing_file(tmp_path):
    with pytest.raises(PolicyError) as info:
        validate_file(tmp_path / "nope.json")
    assert [(p.pointer, p.message) for p in info.value.problems] == [
        ("", "cannot read the policy file: No such file or directory")
    ]


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b'{"id": "\xff"}')
    with pytest.raises(PolicyError) as info:
        validate_file(path)
    assert [p.message for p in info.value.problems] == ["the policy file is not UTF-8 text"]


# -- the document's shape -----------------------------------------------------------------------


SHAPE_CASES = [
    pytest.param(
        {"schema_version": 2, "idd": "x", "steps": []},
        [
            ("/id", "required field 'id' is missing", None),
            ("/idd", "unknown field 'idd'", "did you mean 'id'?"),
            ("/schema_version", "must be 1 (got 2)", None),
            ("/steps", "must not be empty", None),
        ],
        id="top-level",
    ),
    pytest.param(
        {"schema_version": 1, "id": "x"}, [("/steps", "required field 'steps' is missing", None)], id="steps-missing"
    ),
    pytest.param(
        {"id": "x", "steps": [value_step("a")]},
        [("/schema_version", "required field 'schema_version' is missing", None)],
        id="version-missing",
    ),
    pytest.param(
        policy({"id": "A", "type": "core.value"}, id="Bad"),
        [
            (
                "/id",
                "'Bad' does not match the pattern ^[a-z][a-z0-9_-]*$",
                "use lowercase letters, digits, '_' and '-', starting with a letter",
            ),
            (
                "/steps/0/id",
                "'A' does not match the pattern ^[a-z_][a-z0-9_]*$",
                "use lowercase letters, digits and '_', starting with a letter or '_'",
            ),
        ],
        id="id-patterns",
    ),
    pytest.param(
        policy(value_step("a"), shedule={}),
        [("/shedule", "unknown field 'shedule'", "did you mean 'schedule'?")],
        id="unknown-top-field",
    ),
    pytest.param(
        policy({"id": "a", "type": "core.value", "parms": {}}),
        [("/steps/0/parms", "unknown field 'parms'", "did you mean 'params'?")],
        id="unknown-step-field",
    ),
    pytest.param(
        policy({"id": "a", "type": "core.value", "zzz": 1}),
        [
            (
                "/steps/0/zzz",
                "unknown field 'zzz'",
                "allowed: id, type, params, depends_on, skip_if, on_error, retry, timeout_s, trigger_rule, description",
            )
        ],
        id="unknown-step-field-lists-allowed",
    ),
    pytest.param(policy({"id": "a"}), [("/steps/0/type", "required field 'type' is missing", None)], id="type-missing"),
    pytest.param(
        policy(
            {
                "id": "a",
                "type": "core.value",
                "retry": {"max_attempts": 0, "backof_s": 1},
                "on_error": "explode",
                "trigger_rule": "sometimes",
                "timeout_s": 0,
            },
            defaults={"timeout": 1},
        ),
        [
            ("/defaults/timeout", "unknown field 'timeout'", "did you mean 'timeout_s'?"),
            (
                "/steps/0/on_error",
                "must be 'fail_pipeline', 'log_and_continue' or 'retry_then_fail' (got 'explode')",
                None,
            ),
            ("/steps/0/retry/backof_s", "unknown field 'backof_s'", "did you mean 'backoff_s'?"),
            ("/steps/0/retry/max_attempts", "must be greater than or equal to 1 (got 0)", None),
            ("/steps/0/timeout_s", "must be greater than 0 (got 0)", None),
            ("/steps/0/trigger_rule", "must be 'all_success' or 'all_done' (got 'sometimes')", None),
        ],
        id="step-settings",
    ),
    pytest.param(
        policy(value_step("a"), max_concurrency=0, timeout_s=-1),
        [
            ("/max_concurrency", "must be greater than or equal to 1 (got 0)", None),
            ("/timeout_s", "must be greater than 0 (got -1)", None),
        ],
        id="run-limits",
    ),
    pytest.param(
        policy(
            value_step("a"),
            params={
                "n": {"type": "integer", "defualt": 1},
                "m": {"type": "int"},
                "k": {"type": "integer", "default": "x"},
                "9bad": {"type": "string"},
            },
        ),
        [
            ("/params/9bad", "invalid parameter name '9bad'", "use letters, digits and _, not starting with a digit"),
            ("/params/k/default", "default 'x' is not of type integer", None),
            (
                "/params/m/type",
                "must be 'string', 'integer', 'number', 'boolean', 'object' or 'array' (got 'int')",
                None,
            ),
            ("/params/n/defualt", "unknown field 'defualt'", "did you mean 'default'?"),
        ],
        id="param-declarations",
    ),
    pytest.param(
        policy(value_step("a"), schedule="daily", retention=[]),
        [("/retention", "must be an object", None), ("/schedule", "must be an object (got 'daily')", None)],
        id="schedule-retention-are-objects",
    ),
]


@pytest.mark.parametrize(("doc", "expected"), SHAPE_CASES)
def test_shape_problems(doc, expected):
    assert problems_of(doc) == expected


def test_schedule_and_retention_objects_are_accepted():
    validate_document(policy(value_step("a"), schedule={"cron": "* * * * *"}, retention={"days": 3}))


# -- step ids and types ---------------------------------------------------------------------------


def test_duplicate_step_ids_across_steps_and_on_failure():
    doc = policy(value_step("a"), value_step("b"), value_step("a"), on_failure=[value_step("b")])
    assert problems_of(doc) == [  # sorted by pointer: /on_failure before /steps
        ("/on_failure/0/id", "duplicate step id 'b' (first used at /steps/1)", None),
        ("/steps/2/id", "duplicate step id 'a' (first used at /steps/0)", None),
    ]


@pytest.mark.parametrize("reserved", ["params", "run"])
def test_reserved_step_ids(reserved):
    assert problems_of(policy(value_step(reserved))) == [
        ("/steps/0/id", f"step id {reserved!r} is reserved", "choose another id")
    ]


@pytest.mark.parametrize(
    ("type_name", "hint"),
    [
        pytest.param("core.valu", "did you mean 'core.value'?", id="near-miss"),
        pytest.param("asert", "did you mean 'assert'?", id="near-alias"),
        pytest.param("zzzzzz", "run 'engine steps' to list them", id="nothing-near"),
    ],
)
def test_unknown_step_type_suggests_the_nearest_name(type_name, hint):
    assert problems_of(policy({"id": "a", "type": type_name})) == [
        ("/steps/0/type", f"unknown step type {type_name!r}", hint)
    ]


@pytest.mark.parametrize("alias", ["value", "core.value"])
def test_step_type_alias_is_accepted(alias):
    valid = validate_document(policy({"id": "a", "type": alias, "params": {"value": 1}}))
    assert valid.step_types["a"].type == "core.value"


@pytest.mark.parametrize(
    "step", [{"id": "Bad", "type": "core.valu"}, {"type": "core.valu"}], ids=["invalid-id", "missing-id"]
)
def test_step_with_bad_id_still_gets_its_other_problems_reported(step):
    assert ("/steps/0/type", "unknown step type 'core.valu'", "did you mean 'core.value'?") in problems_of(policy(step))


# -- params against the step type's Params model --------------------------------------------------


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        pytest.param(
            {"id": "a", "type": "core.value", "params": {"valeu": 1}},
            [("/steps/0/params/valeu", "unknown field 'valeu'", "did you mean 'value'?")],
            id="unknown-param",
        ),
        pytest.param(
            {"id": "a", "type": "test.typed", "params": {"count": "abc"}},
            [("/steps/0/params/count", 'expected an integer, got the string "abc"', None)],
            id="wrong-type",
        ),
        pytest.param(
            {"id": "a", "type": "test.flaky", "params": {}},
            [("/steps/0/params/counter_file", "required field 'counter_file' is missing", None)],
            id="missing-param",
        ),
        pytest.param(
            {"id": "a", "type": "core.shell", "params": {"argv": ["echo", 3]}},
            [("/steps/0/params/argv/1", "must be a string (got 3)", None)],
            id="list-item-pointer",
        ),
        pytest.param(
            {"id": "a", "type": "core.shell", "params": {"argv": []}},
            [("/steps/0/params/argv", "must not be empty", None)],
            id="constraint",
        ),
        pytest.param(
            {"id": "a", "type": "core.value", "params": []},
            [("/steps/0/params", "must be an object", None)],
            id="params-not-object",
        ),
    ],
)
def test_params_are_checked_against_the_params_model(step, expected):
    assert problems_of(policy(step)) == expected


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"count": {"ref": "ctx.params.n"}}, id="ref-for-int"),
        pytest.param({"count": {"template": "{{ params.n }}"}}, id="template-for-int"),
        pytest.param({"label": {"secret": "LABEL"}}, id="secret-for-str"),
        pytest.param({"count": {"literal": 3}}, id="literal-for-int"),
    ],
)
def test_expression_may_stand_where_a_typed_literal_goes(params):
    doc = policy({"id": "a", "type": "test.typed", "params": params}, params={"n": {"type": "integer", "default": 1}})
    validate_document(doc)


def test_expressions_inside_lists_and_dicts_of_typed_params():
    doc = policy(
        {
            "id": "a",
            "type": "core.shell",
            "params": {
                "argv": ["echo", {"ref": "ctx.params.word"}, {"template": "{{ params.word }}!"}],
                "env": {"TOKEN": {"secret": "TOKEN"}},
                "parse_json": {"ref": "ctx.params.parse"},
            },
        },
        params={"word": {"type": "string", "default": "hi"}, "parse": {"type": "boolean", "default": False}},
    )
    validate_document(doc)


def test_expression_does_not_hide_problems_next_to_it():
    doc = policy(
        {"id": "a", "type": "core.shell", "params": {"argv": [{"ref": "ctx.params.word"}, 3]}},
        params={"word": {"type": "string", "default": "hi"}},
    )
    assert problems_of(doc) == [("/steps/0/params/argv/1", "must be a string (got 3)", None)]


# -- depends_on and refs to steps ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("step_a", "expected"),
    [
        pytest.param(
            value_step("a", depends_on=["bb"]),
            ("/steps/0/depends_on/0", "depends on unknown step 'bb'", "did you mean 'b'?"),
            id="depends_on",
        ),
        pytest.param(
            value_step("a", {"ref": "ctx.bb.x"}),
            ("/steps/0/params/value/ref", "ref to unknown step 'bb'", "did you mean 'b'?"),
            id="ref",
        ),
        pytest.param(
            value_step("a", [{"k": {"ref": "ctx.zzz"}}]),
            ("/steps/0/params/value/0/k/ref", "ref to unknown step 'zzz'", None),
            id="nested-ref",
        ),
        pytest.param(
            {"id": "a", "type": "core.assert", "params": {"condition": {"ref": "ctx.zz.x", "op": "exists"}}},
            ("/steps/0/params/condition/ref", "ref to unknown step 'zz'", None),
            id="condition-param-ref",
        ),
        pytest.param(
            value_step("a", skip_if={"ref": "ctx.c.x", "op": "eq", "value": {"ref": "ctx.bb.y"}}),
            ("/steps/0/skip_if/value/ref", "ref to unknown step 'bb'", "did you mean 'b'?"),
            id="skip_if-right-side",
        ),
    ],
)
def test_reference_to_unknown_step(step_a, expected):
    assert problems_of(policy(step_a, value_step("b"), value_step("c"))) == [expected]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        pytest.param(
            "ctx.t.cuont",
            ("ref 'ctx.t.cuont': step 't' (test.typed) has no output field 'cuont'", "did you mean 'count'?"),
            id="near-miss",
        ),
        pytest.param(
            "ctx.t.zzz",
            ("ref 'ctx.t.zzz': step 't' (test.typed) has no output field 'zzz'", "its output has: count, items, label"),
            id="lists-fields",
        ),
    ],
)
def test_ref_to_field_the_output_model_does_not_have(ref, expected):
    doc = policy({"id": "t", "type": "test.typed"}, value_step("a", {"ref": ref}))
    assert problems_of(doc) == [("/steps/1/params/value/ref", *expected)]


@pytest.mark.parametrize("ref", ["ctx.t", "ctx.t.count", "ctx.t.label", "ctx.t.items"])
def test_ref_to_declared_output_fields_is_valid(ref):
    validate_document(policy({"id": "t", "type": "test.typed"}, value_step("a", {"ref": ref})))


NESTED_OUTPUT_SOURCE = '''
from __future__ import annotations

from pydantic import BaseModel

from engine import Step


class Nested(Step, type="test.nested_output"):
    """An Output holding a list of models, written the usual way (a forward reference)."""

    class Params(BaseModel):
        pass

    class Item(BaseModel):
        name: str

    class Output(BaseModel):
        items: list[Nested.Item] = []

    async def run(self, params, ctx):
        return self.Output(items=[self.Item(name="a")])
'''


@pytest.fixture(params=["fresh", "used"])
def nested_output_type(request):
    """A step type whose Output is ``{items: list[Item]}``. "used": its Output model has validated a value,
    as in any process that already ran the step; "fresh": not yet (it still holds a forward reference)."""
    import sys
    import types

    from engine.step import registry

    module = types.ModuleType("tests_engine_nested_output")
    sys.modules[module.__name__] = module
    try:
        exec(compile(NESTED_OUTPUT_SOURCE, "<nested_output>", "exec"), module.__dict__)
        if request.param == "used":
            module.Nested.Output.model_validate({"items": [{"name": "x"}]})
        yield request.param
    finally:
        registry.unregister("test.nested_output")
        del sys.modules[module.__name__]


def _nested_doc(ref: str) -> dict[str, Any]:
    return policy({"id": "t", "type": "test.nested_output"}, value_step("a", {"ref": ref}))


@pytest.mark.parametrize("ref", ["ctx.t.items", "ctx.t.items.0", "ctx.t.items.0.name"])
def test_ref_through_a_list_of_output_models_is_valid(nested_output_type, ref):
    validate_document(_nested_doc(ref))


def test_ref_to_missing_field_of_a_list_item_model_is_reported(nested_output_type):
    assert problems_of(_nested_doc("ctx.t.items.0.nam")) == [
        (
            "/steps/1/params/value/ref",
            "ref 'ctx.t.items.0.nam': step 't' (test.nested_output) has no output field 'nam'",
            "did you mean 'name'?",
        )
    ]


def test_ref_to_output_field_uses_the_field_alias():
    doc = policy(
        {"id": "sh", "type": "core.shell", "params": {"argv": ["true"]}},
        value_step("a", [{"ref": "ctx.sh.json"}, {"ref": "ctx.sh.json_"}]),
    )
    assert problems_of(doc) == [
        (
            "/steps/1/params/value/1/ref",
            "ref 'ctx.sh.json_': step 'sh' (core.shell) has no output field 'json_'",
            "did you mean 'json'?",
        )
    ]


def test_ref_into_step_without_output_model_is_not_checked():
    validate_document(policy(value_step("v", 1), value_step("a", {"ref": "ctx.v.anything.0.goes"})))


def test_refs_and_templates_make_dependencies():
    doc = policy(
        value_step("a", 1),
        value_step("b", 2),
        value_step("c", {"x": {"ref": "ctx.a"}, "y": {"template": "{{ b }} {{ params.p }} {{ run.id }}"}}),
        value_step("d", skip_if={"ref": "ctx.c.x", "op": "eq", "value": {"ref": "ctx.b"}}),
        {"id": "e", "type": "core.assert", "params": {"condition": {"ref": "ctx.d", "op": "exists"}}},
        value_step("f", depends_on=["e", "a"]),
        params={"p": {"type": "string", "default": "x"}},
    )
    valid = validate_document(doc)
    assert valid.deps == {"a": [], "b": [], "c": ["a", "b"], "d": ["c", "b"], "e": ["d"], "f": ["e", "a"]}


def test_duplicate_dependencies_are_counted_once():
    valid = validate_document(
        policy(value_step("a"), value_step("b", [{"ref": "ctx.a"}, {"ref": "ctx.a.x"}], depends_on=["a"]))
    )
    assert valid.deps["b"] == ["a"]


# -- on_failure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "pointer", "what"),
    [
        pytest.param(value_step("a", {"ref": "ctx.alert"}), "/steps/0/params/value/ref", "ref to", id="ref"),
        pytest.param(value_step("a", depends_on=["alert"]), "/steps/0/depends_on/0", "depends on", id="depends_on"),
        pytest.param(
            value_step("a", {"template": "{{ alert }}"}),
            "/steps/0/params/value/template",
            "template uses",
            id="template",
        ),
        pytest.param(
            value_step("a", skip_if={"ref": "ctx.alert", "op": "exists"}),
            "/steps/0/skip_if/ref",
            "ref to",
            id="skip_if",
        ),
    ],
)
def test_main_steps_cannot_reference_on_failure_steps(step, pointer, what):
    doc = policy(step, on_failure=[value_step("alert")])
    assert problems_of(doc) == [
        (pointer, f"{what} on_failure step 'alert' from a main step", "main steps cannot use on_failure steps")
    ]


def test_on_failure_steps_may_reference_main_steps_and_each_other():
    doc = policy(
        value_step("a", 1),
        value_step("b", 2),
        on_failure=[
            value_step("alert", {"ref": "ctx.a"}, depends_on=["b"]),
            value_step("page", {"template": "{{ alert }} {{ b }}"}),
        ],
    )
    valid = validate_document(doc)
    # main steps are all finished before on_failure steps start: only on_failure deps order them
    assert valid.deps == {"a": [], "b": [], "alert": [], "page": ["alert"]}


@pytest.mark.parametrize("field", ["error", "failed_steps"])
def test_ctx_run_error_only_in_on_failure_steps(field):
    doc = policy(
        value_step("a", {"ref": f"ctx.run.{field}"}), on_failure=[value_step("alert", {"ref": f"ctx.run.{field}"})]
    )
    assert problems_of(doc) == [
        ("/steps/0/params/value/ref", f"ref 'ctx.run.{field}': ctx.run.{field} is only set in on_failure steps", None)
    ]


@pytest.mark.parametrize("field", ["id", "policy_id", "started_at", "dry_run", "attempt"])
def test_ctx_run_fields_available_to_main_steps(field):
    validate_document(policy(value_step("a", {"ref": f"ctx.run.{field}"})))


def test_unknown_ctx_run_field():
    assert problems_of(policy(value_step("a", {"ref": "ctx.run.foo"}))) == [
        (
            "/steps/0/params/value/ref",
            "ref 'ctx.run.foo': ctx.run has no 'foo'",
            "ctx.run has: id, policy_id, started_at, dry_run, attempt, trigger, scheduled_for, error, failed_steps",
        )
    ]


# -- params in refs; ref syntax; secrets ----------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "hint"),
    [
        pytest.param({"region": {"type": "string", "default": "eu"}}, "did you mean 'region'?", id="near-miss"),
        pytest.param({}, "declare it under the policy's 'params'", id="none-declared"),
    ],
)
def test_ref_to_undeclared_param(declared, hint):
    doc = policy(value_step("a", {"ref": "ctx.params.regoin"}), params=declared)
    assert problems_of(doc) == [
        ("/steps/0/params/value/ref", "ref 'ctx.params.regoin': unknown parameter 'regoin'", hint)
    ]


def test_ref_to_all_params_is_valid():
    validate_document(policy(value_step("a", {"ref": "ctx.params"})))


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        pytest.param("params.x", "ref 'params.x' must start with 'ctx.' (e.g. 'ctx.params.x')", id="no-ctx"),
        pytest.param("ctx", "ref 'ctx' is not a dotted path like 'ctx.step_id.field'", id="bare-ctx"),
        pytest.param("ctx.a..b", "ref 'ctx.a..b' is not a dotted path like 'ctx.step_id.field'", id="empty-segment"),
        pytest.param(3, "a ref must be a string like 'ctx.step_id.field', not int", id="not-a-string"),
    ],
)
def test_malformed_ref(ref, message):
    assert problems_of(policy(value_step("a", {"ref": ref}), value_step("b"))) == [
        ("/steps/0/params/value/ref", message, None)
    ]


@pytest.mark.parametrize("name", ["1BAD", "has space", ""])
def test_invalid_secret_name(name):
    assert problems_of(policy(value_step("a", {"secret": name}))) == [
        (
            "/steps/0/params/value/secret",
            f"invalid secret name {name!r}",
            "name an environment variable, e.g. SMTP_PASSWORD",
        )
    ]


def test_secret_need_not_be_set_to_validate():
    validate_document(policy(value_step("a", {"secret": "NOT_SET_ANYWHERE_123"})))


def test_a_dict_with_an_expression_key_and_more_keys_is_a_literal():
    valid = validate_document(policy(value_step("a", {"ref": "ctx.nowhere", "other": 1})))
    assert valid.deps["a"] == []


# -- templates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(
            "{{ foo }}",
            [("template uses unknown name 'foo'", "templates can use params, run and step ids, also as ctx.NAME")],
            id="unknown",
        ),
        pytest.param(
            "{{ paramz.x }}", [("template uses unknown name 'paramz'", "did you mean 'params'?")], id="near-params"
        ),
        pytest.param(
            "{{ fetc.rows }}", [("template uses unknown name 'fetc'", "did you mean 'fetch'?")], id="near-step"
        ),
        pytest.param(
            "{{ ctx.params.x }}",  # ctx.NAME reads NAME, and is checked like it
            [("template reads params.x: unknown parameter 'x'", "declare it under the policy's 'params'")],
            id="ctx-prefix",
        ),
        pytest.param(
            "{{ x",
            [("template syntax error on line 1: unexpected end of template, expected 'end of print statement'.", None)],
            id="syntax",
        ),
        pytest.param(
            "{{ zed }}{{ abc }}",
            [
                ("template uses unknown name 'abc'", "templates can use params, run and step ids, also as ctx.NAME"),
                ("template uses unknown name 'zed'", "templates can use params, run and step ids, also as ctx.NAME"),
            ],
            id="every-name-reported",
        ),
    ],
)
def test_template_problems(template, expected):
    doc = policy(value_step("fetch", 1), value_step("a", {"template": template}))
    assert problems_of(doc) == [("/steps/1/params/value/template", m, h) for m, h in expected]


def test_template_must_be_a_string():
    assert problems_of(policy(value_step("a", {"template": 3}))) == [
        ("/steps/0/params/value/template", "a template must be a string", None)
    ]


def test_template_local_names_are_not_dependencies():
    doc = policy(value_step("rows", [1, 2]), value_step("a", {"template": "{% for r in rows %}{{ r }}{% endfor %}"}))
    assert validate_document(doc).deps["a"] == ["rows"]


# -- conditions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("skip_if", "expected"),
    [
        pytest.param(
            {"ref": "ctx.params.x", "op": "equals", "value": 1},
            [("/steps/0/skip_if/op", "unknown op 'equals'", OPS_HINT)],
            id="unknown-op",
        ),
        pytest.param(
            {"ref": "ctx.params.x", "op": "is_emty"},
            [("/steps/0/skip_if/op", "unknown op 'is_emty'", "did you mean 'is_empty'?")],
            id="near-op",
        ),
        pytest.param(
            {"ref": "ctx.params.x", "op": "eq", "vlaue": 1},
            [
                ("/steps/0/skip_if", "op 'eq' needs a 'value' (a literal or {\"ref\": ...})", None),
                ("/steps/0/skip_if/vlaue", "unknown key 'vlaue' in a comparison", "did you mean 'value'?"),
            ],
            id="unknown-key",
        ),
        pytest.param(
            {"all": [{"ref": "ctx.params.y", "op": "exists"}]},
            [
                (
                    "/steps/0/skip_if/all/0/ref",
                    "ref 'ctx.params.y': unknown parameter 'y'",
                    "declare it under the policy's 'params'",
                )
            ],
            id="undeclared-param-in-condition",
        ),
        pytest.param(
            "yes",
            [("/steps/0/skip_if", "a condition must be an object or true/false, not a string", None)],
            id="string",
        ),
    ],
)
def test_condition_problems_have_pointers(skip_if, expected):
    doc = policy(value_step("a", skip_if=skip_if), params={"x": {"type": "integer", "default": 1}})
    assert problems_of(doc) == expected


def test_condition_param_of_a_step_type_is_parsed():
    doc = policy(
        {"id": "a", "type": "core.assert", "params": {"condition": {"ref": "ctx.params.x", "op": "bad"}}},
        params={"x": {"type": "integer", "default": 1}},
    )
    assert problems_of(doc) == [("/steps/0/params/condition/op", "unknown op 'bad'", OPS_HINT)]


# -- cycles -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([value_step("a", depends_on=["a"])], [("/steps/0", "dependency cycle: a -> a")], id="self-loop"),
        pytest.param(
            [value_step("a", depends_on=["b"]), value_step("b", depends_on=["a"])],
            [("/steps/0", "dependency cycle: a -> b -> a")],
            id="two",
        ),
        pytest.param(
            [value_step("a", depends_on=["c"]), value_step("b", depends_on=["a"]), value_step("c", depends_on=["b"])],
            [("/steps/0", "dependency cycle: a -> b -> c -> a")],
            id="three",
        ),
        pytest.param(
            [
                value_step("x"),
                value_step("b", depends_on=["c"]),
                value_step("c", depends_on=["d"]),
                value_step("d", depends_on=["b", "x"]),
            ],
            [("/steps/1", "dependency cycle: b -> d -> c -> b")],
            id="starts-at-first-in-policy-order",
        ),
        pytest.param(
            [value_step("a", {"ref": "ctx.b.v"}), value_step("b", {"template": "{{ a }}"})],
            [("/steps/0", "dependency cycle: a -> b -> a")],
            id="through-ref-and-template",
        ),
        pytest.param(
            [value_step("a", skip_if={"ref": "ctx.b", "op": "exists"}), value_step("b", depends_on=["a"])],
            [("/steps/0", "dependency cycle: a -> b -> a")],
            id="through-skip_if",
        ),
        pytest.param(
            [value_step("a", depends_on=["a"]), value_step("b", depends_on=["c"]), value_step("c", depends_on=["b"])],
            [("/steps/0", "dependency cycle: a -> a"), ("/steps/1", "dependency cycle: b -> c -> b")],
            id="every-cycle-reported",
        ),
    ],
)
def test_cycles_are_printed_as_their_path(steps, expected):
    assert problems_of(policy(*steps)) == [(p, m, CYCLE_HINT) for p, m in expected]


def test_cycle_among_on_failure_steps():
    doc = policy(value_step("a"), on_failure=[value_step("b", depends_on=["c"]), value_step("c", depends_on=["b"])])
    assert problems_of(doc) == [("/on_failure/0", "dependency cycle: b -> c -> b", CYCLE_HINT)]


# -- everything at once ------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_sorted_by_location():
    doc = policy(
        value_step("fetch", {"ref": "ctx.params.regoin"}),
        {"id": "check", "type": "core.asert", "depends_on": ["fetchh"]},
        value_step("fetch"),
        value_step("a", depends_on=["b"], skip_if={"ref": "ctx.params.region", "op": "bigger", "value": 1}),
        value_step("b", {"template": "{{ a }} {{ nope }}"}, retry={"max_attempt": 2}),
        value_step("c", {"ref": "ctx.run.error"}),
        value_step("d"),
        value_step("e"),
        value_step("f"),
        value_step("g"),
        {"id": "h", "type": "test.typed", "params": {"count": "many"}},
        params={"region": {"type": "string", "default": "eu"}},
        max_concurrency="lots",
    )
    with pytest.raises(PolicyError) as info:
        validate_document(doc)
    assert [str(p) for p in info.value.problems] == [
        '/max_concurrency: expected an integer, got the string "lots"',
        "/steps/0/params/value/ref: ref 'ctx.params.regoin': unknown parameter 'regoin' (did you mean 'region'?)",
        "/steps/1/depends_on/0: depends on unknown step 'fetchh' (did you mean 'fetch'?)",
        "/steps/1/type: unknown step type 'core.asert' (did you mean 'core.assert'?)",
        "/steps/2/id: duplicate step id 'fetch' (first used at /steps/0)",
        f"/steps/3: dependency cycle: a -> b -> a ({CYCLE_HINT})",
        "/steps/3/skip_if/op: unknown op 'bigger' (" + OPS_HINT + ")",
        "/steps/4/params/value/template: template uses unknown name 'nope' "
        "(templates can use params, run and step ids, also as ctx.NAME)",
        "/steps/4/retry/max_attempt: unknown field 'max_attempt' (did you mean 'max_attempts'?)",
        "/steps/5/params/value/ref: ref 'ctx.run.error': ctx.run.error is only set in on_failure steps",
        '/steps/10/params/count: expected an integer, got the string "many"',
    ]
    assert str(info.value).splitlines()[0] == "11 problems"


def test_policy_error_from_a_file_names_the_file_and_the_place(write_policy):
    path = write_policy(policy(value_step("a", depends_on=["zz"])))
    with pytest.raises(PolicyError) as info:
        validate_file(path)
    assert info.value.source == str(path)
    assert info.value.exit_code == 2
    (problem,) = info.value.problems
    assert (problem.pointer, problem.message, problem.hint) == (
        "/steps/0/depends_on/0",
        "depends on unknown step 'zz'",
        None,
    )
    assert str(info.value).startswith(f"{path}: 1 problem\n  /steps/0/depends_on/0")
    assert str(info.value).endswith(": depends on unknown step 'zz'")


def test_problem_line_and_column_point_at_the_value_in_the_file(write_policy):
    path = write_policy(policy(value_step("a", 1), {"id": "b", "type": "core.valu"}))
    with pytest.raises(PolicyError) as info:
        validate_file(path)
    (problem,) = info.value.problems
    line = path.read_text().splitlines()[problem.line - 1]
    assert line[problem.column - 1 :].startswith('"type": "core.valu"')


def test_problem_rendering():
    problem = Problem("/steps/3/type", "unknown step type 'core.valu'", hint="did you mean 'core.value'?")
    assert str(problem) == "/steps/3/type: unknown step type 'core.valu' (did you mean 'core.value'?)"
    assert str(Problem("", "bad")) == "/: bad"
    assert problem.to_dict() == {
        "pointer": "/steps/3/type",
        "message": "unknown step type 'core.valu'",
        "hint": "did you mean 'core.value'?",
    }


def test_pointers_escape_slash_and_tilde():
    doc = policy({"id": "a", "type": "core.value", "params": {"value": {"a/b": {"c~d": {"ref": "ctx.nope"}}}}})
    assert problems_of(doc) == [("/steps/0/params/value/a~1b/c~0d/ref", "ref to unknown step 'nope'", None)]


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_validate_exit_codes_and_json(cli, write_policy):
    good = write_policy(policy(value_step("a", 1)), "good.json")
    bad = write_policy(policy(value_step("a", depends_on=["a"]), {"id": "b", "type": "core.valu"}), "bad.json")
    ok = cli("validate", str(good))
    assert (ok.returncode, ok.stdout.strip()) == (0, f"{good}: valid (1 steps, 0 on_failure)")
    failed = cli("validate", str(bad), "--json")
    assert failed.returncode == 2, failed.stderr
    shown = json.loads(failed.stdout)
    assert (shown["valid"], shown["policy"]) == (False, str(bad))
    assert [(p["pointer"], p["message"], p["hint"]) for p in shown["problems"]] == [
        ("/steps/0", "dependency cycle: a -> a", CYCLE_HINT),
        ("/steps/1/type", "unknown step type 'core.valu'", "did you mean 'core.value'?"),
    ]
    text = cli("validate", str(bad))
    assert text.returncode == 2
    assert "/steps/1/type" in text.stderr and "core.valu" in text.stderr


# -- run parameters -------------------------------------------------------------------------------


PARAMS_POLICY = policy(
    value_step("a"),
    params={
        "s": {"type": "string", "default": "x"},
        "i": {"type": "integer", "default": 1},
        "n": {"type": "number", "default": 1.5},
        "b": {"type": "boolean", "default": False},
        "o": {"type": "object", "default": {}},
        "l": {"type": "array", "default": []},
    },
)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        pytest.param("s", "42", "42", id="string-stays-text"),
        pytest.param("s", "", "", id="empty-string"),
        pytest.param("i", "42", 42, id="integer"),
        pytest.param("i", "-7", -7, id="negative-integer"),
        pytest.param("n", "1.5", 1.5, id="number-float"),
        pytest.param("n", "3", 3, id="number-int"),
        pytest.param("n", "1e3", 1000.0, id="number-exponent"),
        pytest.param("b", "true", True, id="bool-true"),
        pytest.param("b", "Yes", True, id="bool-yes"),
        pytest.param("b", "1", True, id="bool-1"),
        pytest.param("b", "off", False, id="bool-off"),
        pytest.param("b", "FALSE", False, id="bool-false"),
        pytest.param("o", '{"a": [1]}', {"a": [1]}, id="object"),
        pytest.param("l", "[1, 2]", [1, 2], id="array"),
    ],
)
def test_coerce_param(name, text, expected):
    value = coerce_param(validate_document(PARAMS_POLICY).policy, name, text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "text", "message", "hint"),
    [
        pytest.param("i", "abc", "--param i='abc' is not a valid integer", "e.g. --param i=42", id="integer-text"),
        pytest.param("i", "1.5", "--param i='1.5' is not a valid integer", "e.g. --param i=42", id="integer-float"),
        pytest.param("n", "many", "--param n='many' is not a valid number", "e.g. --param n=1.5", id="number"),
        pytest.param("b", "maybe", "--param b='maybe' is not a valid boolean", "e.g. --param b=true", id="boolean"),
        pytest.param("o", "[1]", "--param o='[1]' is not a valid object", 'e.g. --param o={"a": 1}', id="object-list"),
        pytest.param("o", "{bad", "--param o='{bad' is not a valid object", 'e.g. --param o={"a": 1}', id="bad-json"),
        pytest.param("l", "1", "--param l='1' is not a valid array", "e.g. --param l=[1, 2]", id="array"),
    ],
)
def test_coerce_param_errors(name, text, message, hint):
    with pytest.raises(PolicyError) as info:
        coerce_param(validate_document(PARAMS_POLICY).policy, name, text)
    assert [(p.pointer, p.message, p.hint) for p in info.value.problems] == [(f"/params/{name}", message, hint)]


def test_check_params_defaults_and_overrides():
    pol = validate_document(PARAMS_POLICY).policy
    assert check_params(pol, {}) == {"s": "x", "i": 1, "n": 1.5, "b": False, "o": {}, "l": []}
    assert check_params(pol, {"i": 5, "n": 2})["i"] == 5


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"reigon": "x"},
            [("/params/reigon", "undeclared parameter 'reigon'", "did you mean 'region'?")],
            id="undeclared-near",
        ),
        pytest.param(
            {"zzz": "x"},
            [("/params/zzz", "undeclared parameter 'zzz'", "declared: count, region")],
            id="undeclared-lists",
        ),
        pytest.param(
            {"count": "3"},
            [("/params/count", "parameter 'count' must be of type integer, got '3'", None)],
            id="ill-typed",
        ),
        pytest.param(
            {"count": True},
            [("/params/count", "parameter 'count' must be of type integer, got True", None)],
            id="bool-is-not-integer",
        ),
    ],
)
def test_check_params_errors(overrides, expected):
    pol = validate_document(
        policy(
            value_step("a"),
            params={"region": {"type": "string", "default": "eu"}, "count": {"type": "integer", "default": 1}},
        )
    ).policy
    with pytest.raises(PolicyError) as info:
        check_params(pol, overrides)
    assert [(p.pointer, p.message, p.hint) for p in info.value.problems] == expected


def test_param_without_default_is_required():
    pol = validate_document(policy(value_step("a"), params={"day": {"type": "string"}})).policy
    with pytest.raises(PolicyError) as info:
        check_params(pol, {})
    assert [(p.pointer, p.message, p.hint) for p in info.value.problems] == [
        ("/params/day", "parameter 'day' is required", "pass --param day=VALUE")
    ]
    assert check_params(pol, {"day": "mon"}) == {"day": "mon"}


def test_param_undeclared_when_policy_declares_none():
    pol = validate_document(policy(value_step("a"))).policy
    with pytest.raises(PolicyError) as info:
        check_params(pol, {"x": 1})
    assert [(p.message, p.hint) for p in info.value.problems] == [
        ("undeclared parameter 'x'", "this policy declares no params")
    ]


def test_run_params_reports_every_bad_param_with_the_file(write_policy):
    from engine.api import run_params

    path = write_policy(
        policy(
            value_step("a"), params={"i": {"type": "integer", "default": 1}, "b": {"type": "boolean", "default": True}}
        )
    )
    valid = validate_file(path)
    assert run_params(valid, {"i": "7"}, {"b": False}) == {"i": 7, "b": False}
    assert run_params(valid, {"i": "7"}, {"i": 1}) == {"i": 7, "b": True}  # --param strings win
    with pytest.raises(PolicyError) as info:
        run_params(valid, {"i": "x", "b": "perhaps"})
    assert info.value.source == str(path)
    assert [p.pointer for p in info.value.problems] == ["/params/b", "/params/i"]
    with pytest.raises(PolicyError) as info:
        run_params(valid, {"nope": "1"})
    assert str(info.value) == f"{path}: 1 problem\n  /params/nope: undeclared parameter 'nope' (declared: b, i)"


def test_unknown_param_of_a_plugin_step_is_an_error():
    doc = policy({"id": "nap", "type": "test.sleep", "params": {"secnds": 5}})
    assert problems_of(doc) == [("/steps/0/params/secnds", "unknown field 'secnds'", "did you mean 'seconds'?")]


def test_a_self_reference_is_a_cycle_unless_the_type_keeps_state():
    with pytest.raises(PolicyError, match=r"dependency cycle: a -> a"):
        validate_document(policy(value_step("a", {"ref": "ctx.a.x"})))
