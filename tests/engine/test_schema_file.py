"""The committed JSON Schema accepts the example policies and rejects ill-typed params per step type."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.conftest import ROOT

SCHEMA = json.loads((ROOT / "policies" / "policy.schema.json").read_text())
EXAMPLES = sorted((ROOT / "policies" / "examples").glob("*.json"))


def validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    return jsonschema.Draft202012Validator(SCHEMA)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_match_the_schema(path):
    errors = list(validator().iter_errors(json.loads(path.read_text())))
    assert errors == []


def doc(step):
    return {"schema_version": 1, "id": "x", "steps": [step]}


@pytest.mark.parametrize(
    "step",
    [
        {"id": "a", "type": "core.shell", "params": {"argv": "echo hi"}},
        {"id": "a", "type": "core.shell", "params": {}},
        {"id": "a", "type": "core.value", "params": {"valeu": 1}},
        {"id": "a", "type": "core.assert", "params": {"condition": {"ref": "ctx.x", "op": "bogus"}}},
        {"id": "a", "type": "core.nope"},
        {"id": "a", "type": "core.value", "skip_if": {"all": []}},
    ],
    ids=["argv-not-list", "argv-missing", "unknown-param", "bad-op", "unknown-type", "empty-all"],
)
def test_schema_rejects_bad_steps(step):
    assert list(validator().iter_errors(doc(step)))


@pytest.mark.parametrize(
    "step",
    [
        {"id": "a", "type": "shell", "params": {"argv": ["echo", {"ref": "ctx.params.x"}]}},
        {"id": "a", "type": "core.shell", "params": {"argv": {"ref": "ctx.b.list"}, "parse_json": {"ref": "ctx.f"}}},
        {"id": "a", "type": "core.value", "params": {"value": {"secret": "TOKEN"}, "delay_s": {"template": "1"}}},
        {"id": "a", "type": "core.assert", "params": {"condition": {"not": {"ref": "ctx.x", "op": "exists"}}}},
    ],
    ids=["alias-and-ref-in-list", "ref-for-whole-field", "secret-and-template", "condition"],
)
def test_schema_accepts_expressions_where_values_go(step):
    assert list(validator().iter_errors(doc(step))) == []
