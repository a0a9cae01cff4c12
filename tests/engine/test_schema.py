"""engine.schema: the policy JSON Schema (Draft 2020-12), params typed per step type (issue #3 §4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from engine.schema import DRAFT, manifest, policy_schema
from tests.conftest import ROOT, policy


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, doc: dict[str, Any]) -> list[str]:
    return [e.message for e in validator.iter_errors(doc)]


def test_schema_is_draft_2020_12():
    schema = policy_schema()
    assert schema["$schema"] == DRAFT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$defs"]["StepSpec"]["discriminator"]["propertyName"] == "type"


@pytest.mark.parametrize("example", sorted((ROOT / "policies" / "examples").glob("*.json")), ids=lambda p: p.name)
def test_example_policies_match_the_schema(validator, example: Path):
    assert errors(validator, json.loads(example.read_text())) == []


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(policy({"id": "a", "type": "core.value", "params": {"value": {"any": ["thing"]}}}), id="value"),
        pytest.param(policy({"id": "a", "type": "value", "params": {"value": 1}}), id="alias"),
        pytest.param(
            policy(
                {
                    "id": "s",
                    "type": "core.shell",
                    "params": {
                        "argv": ["echo", {"ref": "ctx.params.w"}],
                        "env": {"T": {"secret": "TOKEN"}},
                        "parse_json": {"template": "x"},
                    },
                }
            ),
            id="expressions-in-typed-params",
        ),
        pytest.param(
            policy(
                {
                    "id": "g",
                    "type": "core.assert",
                    "params": {
                        "condition": {
                            "all": [
                                {"ref": "ctx.a.n", "op": "gt", "value": 1},
                                {"not": {"ref": "ctx.a.m", "op": "exists"}},
                            ]
                        }
                    },
                    "skip_if": {"ref": "ctx.params.x", "op": "eq", "value": {"ref": "ctx.params.y"}},
                }
            ),
            id="conditions",
        ),
    ],
)
def test_valid_policies_match_the_schema(validator, doc):
    assert errors(validator, doc) == []


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(policy({"id": "s", "type": "core.shell", "params": {"argv": "echo hi"}}), id="shell-argv-string"),
        pytest.param(policy({"id": "v", "type": "core.value", "params": {"valeu": 1}}), id="unknown-param"),
        pytest.param(policy({"id": "v", "type": "core.valu"}), id="unknown-type"),
        pytest.param(
            policy({"id": "v", "type": "core.value", "skip_if": {"ref": "ctx.a", "op": "equals", "value": 1}}),
            id="bad-op",
        ),
        pytest.param(policy({"id": "v", "type": "core.value"}, extra_field=1), id="unknown-top-field"),
    ],
)
def test_invalid_policies_do_not_match_the_schema(validator, doc):
    assert errors(validator, doc) != []


def test_manifest_lists_each_type_with_its_schemas():
    entries = {m["type"]: m for m in manifest()}
    shell = entries["core.shell"]
    assert (shell["aliases"], shell["side_effects"]) == (["shell"], True)
    assert shell["description"].startswith("Run a program")
    assert shell["params_schema"]["required"] == ["argv"]
    assert set(shell["output_schema"]["properties"]) == {"exit_code", "stdout", "stderr", "json", "truncated"}
    assert entries["core.value"]["output_schema"] is None
    assert entries["core.assert"]["params_schema"]["properties"]["condition"]["$ref"] == "#/$defs/Condition"
