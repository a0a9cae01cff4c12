"""engine.values: refs, templates, secrets and literals inside step params (issue #3 §2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import redact
from engine.errors import RefError, SecretError, StepError, TemplateError
from engine.values import (
    Expression,
    RunContext,
    expression_kind,
    iter_expressions,
    mask_secrets,
    parse_ref,
    read_secret,
    render_template,
    resolve,
)
from tests.conftest import policy


@pytest.fixture
def ctx() -> RunContext:
    context = RunContext({"region": "eu", "n": 3}, {"id": "r1", "started_at": "2024-05-06T10:00:00+00:00"})
    context.set_output("fetch", {"rows": [{"amount": 5}, {"amount": 7}], "name": "sales", "empty": None})
    context.set_null("skipped")
    return context


# -- expressions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        pytest.param({"ref": "ctx.a"}, "ref", id="ref"),
        pytest.param({"template": "x"}, "template", id="template"),
        pytest.param({"secret": "X"}, "secret", id="secret"),
        pytest.param({"literal": {"ref": "x"}}, "literal", id="literal"),
        pytest.param({"ref": "ctx.a", "other": 1}, None, id="two-keys"),
        pytest.param({"reff": "ctx.a"}, None, id="other-key"),
        pytest.param("ctx.a", None, id="string"),
        pytest.param(["ref"], None, id="list"),
    ],
)
def test_expression_kind(value, kind):
    assert expression_kind(value) == kind


def test_iter_expressions_finds_every_depth_with_pointers():
    params = {"a": [{"ref": "ctx.x"}, {"b": {"template": "t"}}], "c/d": {"secret": "S"}, "e": {"literal": {"ref": 1}}}
    assert list(iter_expressions(params, "/steps/0/params")) == [
        Expression("/steps/0/params/a/0", "ref", "ctx.x"),
        Expression("/steps/0/params/a/1/b", "template", "t"),
        Expression("/steps/0/params/c~1d", "secret", "S"),
        Expression("/steps/0/params/e", "literal", {"ref": 1}),
    ]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("ctx.a", ("a",)),
        ("ctx.fetch_sales.rows.0.amount", ("fetch_sales", "rows", "0", "amount")),
        ("ctx.params.x", ("params", "x")),
    ],
)
def test_parse_ref(text, path):
    assert parse_ref(text) == path


# -- refs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        pytest.param("ctx.fetch.rows.1.amount", 7, id="list-index-then-key"),
        pytest.param("ctx.fetch.rows.0", {"amount": 5}, id="list-index"),
        pytest.param("ctx.fetch.name", "sales", id="key"),
        pytest.param(
            "ctx.fetch", {"rows": [{"amount": 5}, {"amount": 7}], "name": "sales", "empty": None}, id="whole-output"
        ),
        pytest.param("ctx.params.region", "eu", id="param"),
        pytest.param("ctx.params", {"region": "eu", "n": 3}, id="all-params"),
        pytest.param("ctx.run.id", "r1", id="run-field"),
        pytest.param("ctx.fetch.empty", None, id="null-value"),
        pytest.param("ctx.skipped", None, id="skipped-step"),
        pytest.param("ctx.skipped.rows.0.amount", None, id="into-skipped-step"),
    ],
)
def test_ref_lookup(ctx, ref, expected):
    assert ctx.lookup(parse_ref(ref)) == expected
    assert resolve({"ref": ref}, ctx) == expected


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        pytest.param(
            "ctx.fetch.rows.5.amount",
            "ref ctx.fetch.rows.5.amount at /steps/1/params/x not found: ctx.fetch.rows has 2 items, no index '5'",
            id="index-out-of-range",
        ),
        pytest.param(
            "ctx.fetch.rows.first",
            "ref ctx.fetch.rows.first at /steps/1/params/x not found: ctx.fetch.rows has 2 items, no index 'first'",
            id="index-not-a-number",
        ),
        pytest.param(
            "ctx.fetch.nope",
            "ref ctx.fetch.nope at /steps/1/params/x not found: ctx.fetch has no 'nope' (it has: empty, name, rows)",
            id="missing-key",
        ),
        pytest.param(
            "ctx.fetch.rows.0.price",
            "ref ctx.fetch.rows.0.price at /steps/1/params/x not found: "
            "ctx.fetch.rows.0 has no 'price' (it has: amount)",
            id="missing-key-in-list-item",
        ),
        pytest.param(
            "ctx.fetch.name.first",
            "ref ctx.fetch.name.first at /steps/1/params/x not found: ctx.fetch.name is a str, not an object or list",
            id="into-a-string",
        ),
        pytest.param(
            "ctx.later",
            "ref ctx.later at /steps/1/params/x not found: ctx has no 'later' (it has: fetch, params, run)",
            id="step-without-output",
        ),
        pytest.param(
            "ctx.params.zone",
            "ref ctx.params.zone at /steps/1/params/x not found: ctx.params has no 'zone' (it has: n, region)",
            id="missing-param",
        ),
    ],
)
def test_missing_ref_path_message_names_the_path(ctx, ref, message):
    with pytest.raises(RefError) as info:
        resolve({"x": {"ref": ref}}, ctx, "/steps/1/params")
    assert str(info.value) == message
    assert info.value.retryable is False


def test_ref_to_a_step_that_later_succeeds_sees_its_output(ctx):
    ctx.set_output("skipped", {"v": 1})  # a resumed run: the skipped step ran
    assert ctx.lookup(("skipped", "v")) == 1


def test_resolve_walks_dicts_and_lists_and_leaves_literals(ctx):
    params = {
        "a": [{"ref": "ctx.params.n"}, {"template": "{{ params.n * 2 }}"}, 4, "text", None, True],
        "b": {"nested": {"ref": "ctx.fetch.rows.0.amount"}, "two_keys": {"ref": "x", "other": 1}},
    }
    assert resolve(params, ctx) == {
        "a": [3, "6", 4, "text", None, True],
        "b": {"nested": 5, "two_keys": {"ref": "x", "other": 1}},
    }


def test_resolve_leaves_condition_fields_alone(ctx):
    params = {"condition": {"ref": "ctx.fetch.nope", "op": "exists"}, "message": {"ref": "ctx.fetch.name"}}
    assert resolve(params, ctx, skip=frozenset({"condition"})) == {
        "condition": {"ref": "ctx.fetch.nope", "op": "exists"},
        "message": "sales",
    }


@pytest.mark.parametrize(
    "payload",
    [{"ref": "ctx.params.n"}, {"template": "{{ nope }}"}, {"secret": "NOT_SET"}, [{"ref": "ctx.x"}], "plain"],
    ids=["ref", "template", "secret", "list", "string"],
)
def test_literal_is_never_resolved(ctx, payload):
    assert resolve({"literal": payload}, ctx) == payload


# -- templates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(
            "Sales for {{ params.region }} ({{ run.started_at[:10] }})", "Sales for eu (2024-05-06)", id="issue-example"
        ),
        pytest.param("{{ fetch.rows[1].amount + fetch.rows[0]['amount'] }}", "12", id="step-output"),
        pytest.param("{% for r in fetch.rows %}{{ r.amount }},{% endfor %}", "5,7,", id="loop"),
        pytest.param("{{ fetch.rows | length }}", "2", id="filter"),
        pytest.param("{{ skipped }}", "None", id="null-step"),
        pytest.param("no braces", "no braces", id="plain"),
    ],
)
def test_render_template(ctx, template, expected):
    assert render_template(template, ctx) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param(
            "{{ nope }}",
            "template at /steps/0/params/t: 'nope' is undefined (names available: params, run and step ids)",
            id="unknown-name",
        ),
        pytest.param(
            "{{ params.zone }}",
            "template at /steps/0/params/t: 'dict object' has no attribute 'zone' "
            "(names available: params, run and step ids)",
            id="unknown-attribute",
        ),
        pytest.param(
            "{{ nope | upper }}",
            "template at /steps/0/params/t: 'nope' is undefined (names available: params, run and step ids)",
            id="unknown-in-filter",
        ),
        pytest.param(
            "{{ 1 / 0 }}", "template at /steps/0/params/t: ZeroDivisionError: division by zero", id="runtime-error"
        ),
        pytest.param(
            "{{ x",
            "template at /steps/0/params/t: syntax error on line 1: unexpected end of template, "
            "expected 'end of print statement'.",
            id="syntax",
        ),
    ],
)
def test_template_errors(ctx, template, message):
    with pytest.raises(TemplateError) as info:
        render_template(template, ctx, "/steps/0/params/t")
    assert str(info.value) == message
    assert info.value.retryable is False


@pytest.mark.parametrize(
    ("template", "attribute", "owner"),
    [
        pytest.param("{{ ''.__class__.__mro__ }}", "__class__", "str", id="str-class"),
        pytest.param("{{ params.__class__.__subclasses__() }}", "__class__", "dict", id="dict-class"),
        pytest.param("{{ fetch.rows.append(1) }}", "append", "list", id="mutate-list"),
        pytest.param("{{ params.update({'region': 'us'}) }}", "update", "dict", id="mutate-dict"),
        pytest.param("{{ cycler.__init__.__globals__ }}", "__init__", "type", id="globals"),
    ],
)
def test_template_sandbox_refuses_unsafe_access(ctx, template, attribute, owner):
    with pytest.raises(TemplateError) as info:
        render_template(template, ctx, "/steps/0/params/t")
    assert str(info.value).startswith(
        f"template at /steps/0/params/t: not allowed in the sandbox: access to attribute '{attribute}' of '{owner}"
    )
    assert ctx.data["params"] == {"region": "eu", "n": 3}
    assert ctx.data["fetch"]["rows"] == [{"amount": 5}, {"amount": 7}]


# -- secrets --------------------------------------------------------------------------------------


def test_secret_is_read_from_the_environment_and_registered_for_redaction(ctx, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-xyz")
    assert resolve({"password": {"secret": "SMTP_PASSWORD"}}, ctx) == {"password": "hunter2-xyz"}
    assert redact.redact("login with hunter2-xyz failed") == "login with *** failed"


def test_missing_secret_error_names_variable_and_place():
    with pytest.raises(SecretError) as info:
        read_secret("NOT_SET_123", "/steps/0/params/password")
    assert str(info.value) == (
        "secret 'NOT_SET_123' (at /steps/0/params/password) is not set: set the environment variable NOT_SET_123"
    )
    assert info.value.retryable is False


def test_mask_secrets_for_previews():
    params = {"a": {"secret": "X"}, "b": [{"secret": "Y"}, 1], "c": {"ref": "ctx.x"}, "d": {"literal": {"secret": "Z"}}}
    assert mask_secrets(params) == {
        "a": "***",
        "b": ["***", 1],
        "c": {"ref": "ctx.x"},
        "d": {"literal": {"secret": "Z"}},
    }


# -- in a real run -----------------------------------------------------------------------------------


def _outputs(store, result) -> dict[str, Any]:
    import json

    return {
        s["step_id"]: json.loads(s["output_json"]) if s["output_json"] else None for s in store.get_steps(result.run_id)
    }


def test_values_resolve_in_a_run(run, store):
    doc = policy(
        {"id": "fetch", "type": "core.value", "params": {"value": {"rows": [{"amount": 5}, {"amount": 7}]}}},
        {
            "id": "total",
            "type": "core.value",
            "params": {
                "value": {
                    "second": {"ref": "ctx.fetch.rows.1.amount"},
                    "title": {
                        "template": "{{ params.region }}: {{ fetch.rows | length }} rows, run "
                        "{{ run.policy_id }} #{{ run.attempt }}"
                    },
                    "raw": {"literal": {"ref": "ctx.fetch"}},
                }
            },
        },
        params={"region": {"type": "string", "default": "eu"}},
        id="vals",
    )
    result = run(doc, param_strings={"region": "us"})
    assert result.status == "SUCCESS"
    assert _outputs(store, result)["total"] == {
        "second": 7,
        "title": "us: 2 rows, run vals #1",
        "raw": {"ref": "ctx.fetch"},
    }


def test_typed_param_gets_a_template_value_coerced(run, store):
    doc = policy(
        {"id": "t", "type": "test.typed", "params": {"count": {"template": "{{ params.n + 1 }}"}}},
        params={"n": {"type": "integer", "default": 1}},
    )
    result = run(doc)
    assert result.status == "SUCCESS"
    assert _outputs(store, result)["t"]["count"] == 2


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param(
            {"ref": "ctx.fetch.rows.9"},
            "ref ctx.fetch.rows.9 at /steps/1/params/value not found: ctx.fetch.rows has 1 items, no index '9'",
            id="missing-ref",
        ),
        pytest.param(
            {"template": "{{ fetch.nope }}"},
            "template at /steps/1/params/value: 'dict object' has no "
            "attribute 'nope' (names available: params, run and step ids)",
            id="template-strict-undefined",
        ),
        pytest.param(
            {"secret": "UNSET_SECRET_X"},
            "secret 'UNSET_SECRET_X' (at /steps/1/params/value) is not set: "
            "set the environment variable UNSET_SECRET_X",
            id="missing-secret",
        ),
        pytest.param(
            {"template": "{{ ''.__class__ }}"},
            "template at /steps/1/params/value: not allowed in the "
            "sandbox: access to attribute '__class__' of 'str' object is unsafe.",
            id="sandbox",
        ),
    ],
)
def test_value_errors_fail_the_step_without_retrying(run, store, value, error):
    doc = policy(
        {"id": "fetch", "type": "core.value", "params": {"value": {"rows": [1]}}},
        {
            "id": "use",
            "type": "core.value",
            "params": {"value": value},
            "on_error": "retry_then_fail",
            "retry": {"max_attempts": 3, "backoff_s": 0},
        },
    )
    result = run(doc)
    assert result.status == "FAILED"
    use = result.steps[1]
    assert (use.status, use.error, use.attempts) == ("FAILED", error, 1)
    assert result.error == f"step 'use' failed: {error}"


def test_secret_is_read_when_the_step_starts(run, store, monkeypatch):
    doc = policy({"id": "echo", "type": "test.echo", "params": {"text": {"secret": "LATE_SECRET"}}})
    monkeypatch.setenv("LATE_SECRET", "set-after-writing-the-policy")
    result = run(doc)
    assert result.status == "SUCCESS"
    assert _outputs(store, result)["echo"] == {"text": "***"}  # stored redacted


@pytest.mark.parametrize("upstream_state", ["skipped", "failed"])
def test_refs_to_skipped_or_failed_steps_resolve_to_null_under_all_done(run, store, upstream_state):
    upstream = (
        {"id": "up", "type": "test.typed", "params": {"count": 1}, "skip_if": True}
        if upstream_state == "skipped"
        else {"id": "up", "type": "test.fail", "on_error": "log_and_continue"}
    )
    doc = policy(
        upstream,
        {
            "id": "gather",
            "type": "core.value",
            "trigger_rule": "all_done",
            "params": {
                "value": {
                    "whole": {"ref": "ctx.up"},
                    "field": {"ref": "ctx.up.label"},
                    "text": {"template": "{{ up }}"},
                }
            },
        },
        {"id": "strict", "type": "core.value", "params": {"value": {"ref": "ctx.up"}}},
    )
    result = run(doc)
    assert result.status == ("SUCCESS" if upstream_state == "skipped" else "PARTIAL")
    assert _outputs(store, result)["gather"] == {"whole": None, "field": None, "text": "None"}
    strict = result.steps[2]
    assert strict.status == "SKIPPED"
    assert strict.skip_reason == (
        "upstream 'up' was skipped" if upstream_state == "skipped" else "upstream 'up' failed"
    )


def test_step_error_messages_are_step_errors():
    for cls in (RefError, TemplateError, SecretError):
        assert issubclass(cls, StepError)


def test_templates_read_ctx_names_like_bare_names(run, store):
    from tests.conftest import policy as make

    doc = make(
        {"id": "a", "type": "core.value", "params": {"value": {"n": 2}}},
        {
            "id": "b",
            "type": "core.value",
            "params": {"value": {"template": "{{ ctx.params.name }}: {{ ctx.a.n }} {{ ctx['a']['n'] }} {{ a.n }}"}},
        },
        params={"name": {"type": "string", "default": "Ada"}},
    )
    result = run(doc)
    assert result.status == "SUCCESS"
    (row,) = [r for r in store.get_steps(result.run_id) if r["step_id"] == "b"]
    assert json.loads(row["output_json"]) == "Ada: 2 2 2"
