"""Run parameters: declared defaults, ``--param name=value`` coercion, type checks."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from . import limits, pointers
from .errors import PolicyError, Problem, did_you_mean
from .policy import Policy

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def json_type_matches(declared: str, value: Any) -> bool:
    if declared in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, JSON_TYPES[declared])


def check_params(policy: Policy, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The run parameters: declared defaults overridden by ``overrides`` (already typed)."""
    problems = []
    values: dict[str, Any] = {}
    for name in overrides:
        if name not in policy.params:
            hint = did_you_mean(name, sorted(policy.params)) or (
                f"declared: {', '.join(sorted(policy.params))}" if policy.params else "this policy declares no params"
            )
            problems.append(Problem(pointers.join("/params", name), f"undeclared parameter {name!r}", hint))
    for name, decl in policy.params.items():
        ptr = pointers.join("/params", name)
        if name in overrides:
            value = overrides[name]
            if not json_type_matches(decl.type, value):
                problems.append(Problem(ptr, f"parameter {name!r} must be of type {decl.type}, got {value!r}"))
                continue
            values[name] = value
        elif "default" in decl.model_fields_set:
            values[name] = decl.default
        else:
            problems.append(Problem(ptr, f"parameter {name!r} is required", f"pass --param {name}=VALUE"))
    if problems:
        raise PolicyError(problems)
    return values


def coerce_param(policy: Policy, name: str, text: str) -> Any:
    """Turn ``--param name=text`` into the declared type; raise PolicyError if it cannot."""
    decl = policy.params.get(name)
    ptr = pointers.join("/params", name)
    if decl is None:
        return text  # check_params reports it as undeclared
    kind = decl.type
    try:
        return _coerce(kind, text)
    except limits.LimitError as exc:
        raise PolicyError([Problem(ptr, f"--param {name}: {exc}")]) from None
    except ValueError:
        example = {"integer": "42", "number": "1.5", "boolean": "true", "object": '{"a": 1}', "array": "[1, 2]"}[kind]
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise PolicyError(
            [Problem(ptr, f"--param {name}={shown!r} is not a valid {kind}", f"e.g. --param {name}={example}")]
        ) from None


def _coerce(kind: str, text: str) -> Any:
    if kind == "string":
        return text
    if kind == "integer":
        return _integer(text.strip())
    if kind == "number":
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        if value.is_integer() and "." not in text and "e" not in text.lower():
            return _integer(text.strip())
        return value
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(text)
    try:
        value = json.loads(text, parse_int=_integer, parse_constant=_no_constant)
    except RecursionError:
        raise limits.LimitError(f"the value is nested deeper than {limits.MAX_DEPTH} levels") from None
    if not json_type_matches(kind, value):
        raise ValueError(text)
    deep = limits.find_too_deep(value)
    if deep is not None:
        raise limits.LimitError(limits.too_deep_message("the value", deep))
    return value


def _integer(text: str) -> int:
    digits = len(text.lstrip("+-").replace("_", ""))
    if digits > limits.MAX_INT_DIGITS:
        raise limits.LimitError(f"an integer of {digits} digits is too large (at most {limits.MAX_INT_DIGITS} digits)")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(name)
