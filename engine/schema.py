"""JSON Schemas: the policy schema (Draft 2020-12) and the step manifest.

In the policy schema each step is a variant of a union discriminated by ``type``, whose
``params`` follow that type's Params model, with a ``ref``/``template``/``secret``/``literal``
expression allowed wherever a value goes. Editors complete policies from it via ``"$schema"``.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from . import sections as policy_sections
from .conditions import OPS
from .policy import Policy
from .step import Step, registry

DRAFT = "https://json-schema.org/draft/2020-12/schema"

EXPRESSION_SCHEMA: dict[str, Any] = {
    "description": "A value computed when the step starts (see docs/values.md).",
    "oneOf": [
        {
            "type": "object",
            "properties": {"ref": {"type": "string", "pattern": r"^ctx\.[^.]+(\.[^.]+)*$"}},
            "required": ["ref"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"template": {"type": "string"}},
            "required": ["template"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"secret": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}},
            "required": ["secret"],
            "additionalProperties": False,
        },
        {"type": "object", "properties": {"literal": {}}, "required": ["literal"], "additionalProperties": False},
    ],
}

_REF_OR_LITERAL = {
    "anyOf": [
        {
            "type": "object",
            "properties": {"ref": {"type": "string"}},
            "required": ["ref"],
            "additionalProperties": False,
        },
        {"not": {"type": "object", "required": ["ref"]}},
    ]
}


def _condition_schemas() -> dict[str, Any]:
    def combinator(key: str) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {key: {"type": "array", "items": {"$ref": "#/$defs/Condition"}, "minItems": 1}},
            "required": [key],
            "additionalProperties": False,
        }

    return {
        "Condition": {
            "description": "A condition (see docs/conditions.md).",
            "anyOf": [
                {"type": "boolean"},
                {"$ref": "#/$defs/Comparison"},
                combinator("all"),
                combinator("any"),
                {
                    "type": "object",
                    "properties": {"not": {"$ref": "#/$defs/Condition"}},
                    "required": ["not"],
                    "additionalProperties": False,
                },
            ],
        },
        "Comparison": {
            "type": "object",
            "properties": {
                "ref": {"type": "string", "pattern": r"^ctx\."},
                "op": {"enum": list(OPS)},
                "value": _REF_OR_LITERAL,
            },
            "required": ["ref", "op"],
            "additionalProperties": False,
        },
    }


def _allow_expressions(schema: Any) -> Any:
    """Wrap every value position of a Params schema in ``anyOf: [it, Expression]``."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _wrap(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _wrap(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _wrap(out["additionalProperties"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in out:
            out[key] = [_allow_expressions(s) for s in out[key]]
    return out


def _wrap(schema: Any) -> Any:
    if not isinstance(schema, dict) or schema.get("$ref") == "#/$defs/Condition":
        return schema
    inner = _allow_expressions(schema)
    meta = {k: inner.pop(k) for k in ("description", "title", "default") if k in inner}
    if not inner:  # ``Any``: already accepts an expression
        return {**meta}
    return {**meta, "anyOf": [inner, {"$ref": "#/$defs/Expression"}]}


def _prefixed_model_schema(model: Any, prefix: str, mode: str = "validation") -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's schema with its ``$defs`` renamed ``<prefix><name>`` (no clashes between step types)."""
    schema = model.model_json_schema(by_alias=True, mode=mode, ref_template=f"#/$defs/{prefix}{{model}}")
    defs = {f"{prefix}{name}": d for name, d in schema.pop("$defs", {}).items()}
    return _condition_refs(schema), _condition_refs(defs)


def _condition_refs(schema: Any) -> Any:
    """Replace the ConditionValue marker by a ``$ref`` to the Condition schema."""
    if isinstance(schema, dict):
        if schema.get("x-engine-condition"):
            extra = {k: v for k, v in schema.items() if k in ("description", "title")}
            return {"$ref": "#/$defs/Condition", **extra}
        return {k: _condition_refs(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_condition_refs(v) for v in schema]
    return schema


def _with_defs(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if '"#/$defs/Condition"' in json.dumps(schema) or '"#/$defs/Condition"' in json.dumps(defs):
        defs = {**defs, **_condition_schemas()}
    if defs:
        schema["$defs"] = dict(sorted(defs.items()))
    return schema


def _def_name(type_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", type_name)


def params_schema(step: type[Step]) -> dict[str, Any]:
    return _with_defs(*_prefixed_model_schema(step.Params, f"{_def_name(step.type)}__"))


def output_schema(step: type[Step]) -> dict[str, Any] | None:
    if step.Output is None:
        return None
    return _with_defs(*_prefixed_model_schema(step.Output, f"{_def_name(step.type)}__", mode="serialization"))


def policy_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema(by_alias=True)
    defs: dict[str, Any] = schema.pop("$defs")
    defs.update(_condition_schemas())
    defs["Expression"] = EXPRESSION_SCHEMA
    generic = defs.pop("StepSpec")
    generic["properties"]["skip_if"] = {"$ref": "#/$defs/Condition", "description": "When true the step is SKIPPED."}
    variants = []
    mapping = {}
    for step in registry.types():
        name = _def_name(step.type)
        params, params_defs = _prefixed_model_schema(step.Params, f"{name}__")
        defs.update({k: _allow_expressions(v) for k, v in params_defs.items()})
        defs[f"{name}__Params"] = _allow_expressions(params)
        variant = copy.deepcopy(generic)
        variant["title"] = f"Step {step.type}"
        variant["description"] = step.description().split("\n\n")[0]
        variant["properties"]["type"] = {"enum": [step.type, *step.aliases]}
        variant["properties"]["params"] = {"$ref": f"#/$defs/{name}__Params"}
        defs[f"Step_{name}"] = variant
        variants.append({"$ref": f"#/$defs/Step_{name}"})
        for alias in (step.type, *step.aliases):
            mapping[alias] = f"#/$defs/Step_{name}"
    properties = dict(schema["properties"])
    for name, section in policy_sections.sections().items():
        section_schema = section.adapter.json_schema(by_alias=True, ref_template=f"#/$defs/section_{name}__{{model}}")
        defs.update({f"section_{name}__{k}": v for k, v in section_schema.pop("$defs", {}).items()})
        properties[name] = {"description": section.description, **section_schema}
    schema["properties"] = properties
    defs["StepSpec"] = {
        "description": "A step; its params depend on its type.",
        "oneOf": variants,
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    return {
        "$schema": DRAFT,
        "$id": "urn:policy-engine:policy:v1",
        **schema,
        "$defs": dict(sorted(defs.items())),
    }


def manifest() -> list[dict[str, Any]]:
    """Every registered step type with its description and Params/Output JSON Schemas."""
    return [
        {
            "type": step.type,
            "aliases": list(step.aliases),
            "side_effects": step.side_effects,
            "description": step.description(),
            "params_schema": params_schema(step),
            "output_schema": output_schema(step),
        }
        for step in registry.types()
    ]
