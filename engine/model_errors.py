"""pydantic's validation errors as :class:`Problem`\\ s: a JSON pointer, plain words, a hint.

The literal policy document is validated in pydantic's strict JSON mode (:func:`validate_literal`):
a number or a boolean must be written as one, so ``"min_valid_ratio": "0.9"`` is a problem (with the
hint to drop the quotes), while enum values, dates and lists for tuples still read as JSON writes
them. Values that are expressions are resolved at run time and checked (laxly) then.

pydantic's ``loc`` names union members and tags that are not in the document
(``ops/1/sort/decending``); :func:`problems` turns it into the document's pointer
(``/ops/1/decending``) and walks the same ``loc`` through the annotations to find the model at a
place, for "did you mean" among its fields, or the tags of a tagged union.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import AliasChoices, BaseModel, Discriminator, Tag, ValidationError
from pydantic.fields import FieldInfo

from . import pointers
from .errors import Problem, did_you_mean

_FRIENDLY = {
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}
# a JSON string where one of these is expected: "expected a number, got the string "0.9""
_SCALARS = {"int": "an integer", "float": "a number", "decimal": "a number", "bool": "true or false"}


def validate_literal(
    data: Any, validate: Callable[[Any], Any], validate_json: Callable[..., Any]
) -> tuple[Any, list[Any]]:
    """Validate a literal document (or a part of it): ``(value, [])``, or ``(None, errors)``.

    ``validate`` is pydantic's usual (lax) validation, such as ``Model.model_validate``; on top,
    ``validate_json`` (``Model.model_validate_json``) runs in strict mode over the same data as JSON,
    and its errors where a JSON string stands for a number or a boolean replace lax mode's at
    those places. (Strict mode only for that: a model's "before" validator hands its result on as
    Python data, where strict mode would refuse a list for a tuple or a string for an enum.)
    """
    value, errors = None, []
    try:
        value = validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):  # not JSON: objects a Python caller put there
        return value, errors
    try:
        validate_json(text, strict=True)
    except ValidationError as exc:
        quoted = [e for e in exc.errors() if _quoted_scalar(e)]
        if quoted:
            places = {tuple(e["loc"]) for e in quoted}
            return None, [e for e in errors if tuple(e["loc"]) not in places] + quoted
    return value, errors


def _quoted_scalar(error: Mapping[str, Any]) -> bool:
    kind = str(error["type"])
    return (
        isinstance(error.get("input"), str) and kind.split("_")[0] in _SCALARS and kind.endswith(("_type", "_parsing"))
    )


def problems(
    errors: list[Any],
    model: Any,
    base: str = "",
    data: Any = None,
    skip: Callable[[str], bool] = lambda pointer: False,
) -> list[Problem]:
    """Every pydantic error (from validating ``data`` against ``model``) as a Problem below ``base``.

    ``skip(pointer)`` drops errors at pointers relative to ``base`` (where an expression stands).
    """
    found: list[tuple[str, str, Problem]] = []
    for error in errors:
        loc = _data_loc(data, tuple(error["loc"])) if data is not None else tuple(error["loc"])
        if skip(pointers.from_loc(loc)):
            continue
        found.append((pointers.from_loc(_without_labels(loc)), error["type"], problem(error, model, base, loc)))
    deep = [relative for relative, _, _ in found]
    out: list[Problem] = []
    for relative, kind, found_problem in found:
        # a union member that wanted another type (a string, a word, an object), beside one that
        # looked inside the value: that one was meant, and its own problems say what is wrong
        if (
            (kind.endswith("_type") or kind in ("literal_error", "enum"))
            and isinstance(_at(data, relative), dict | list)
            and any(d.startswith(relative + "/") for d in deep)
        ):
            continue
        if found_problem not in out:
            out.append(found_problem)
    return out


def problem(error: Mapping[str, Any], model: Any, base: str, loc: tuple[Any, ...] | None = None) -> Problem:
    """One pydantic error as a Problem. ``loc`` is the error's place in the document when it differs
    from pydantic's (which still finds the models and tags at each step)."""
    raw = tuple(error["loc"])
    loc = raw if loc is None else loc
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "extra_forbidden":
        name = str(loc[-1])
        names, accepted = _field_names(_annotation_at(model, raw[:-1]))
        hint = did_you_mean(name, accepted) or (f"allowed: {', '.join(names)}" if names else None)
        return Problem(pointers.from_loc(loc, base), f"unknown field {name!r}", hint)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = str(ctx.get("discriminator", "")).strip("'")
        tags = _tags(_annotation_at(model, raw), field) or re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        where = pointers.from_loc(loc, base)
        if not re.fullmatch(r"\w+", field):  # a callable discriminator: no field to name
            return Problem(where, f"{ctx.get('tag')!r} is not one of: {', '.join(tags)}")
        where = pointers.join(where, field)
        if kind == "union_tag_not_found":
            return Problem(where, f"required field {field!r} is missing", f"one of: {', '.join(tags)}")
        tag = str(ctx.get("tag"))
        return Problem(where, f"unknown {field} {tag!r}", did_you_mean(tag, tags) or f"one of: {', '.join(tags)}")
    if kind == "missing":
        if loc and isinstance(loc[-1], int):  # an item of a fixed-length list (a tuple)
            size = len(typing.get_args(_annotation_at(model, raw[:-1])))
            got = f" (got {len(value)})" if isinstance(value, list | tuple) else ""
            return Problem(pointers.from_loc(loc[:-1], base), f"must be a list of {size} items{got}")
        return Problem(pointers.from_loc(loc, base), f"required field {str(loc[-1])!r} is missing")
    where = pointers.from_loc(_without_labels(loc), base)
    scalar = kind.split("_")[0]
    if _quoted_scalar(error):
        hint = f"drop the quotes: {value.strip()}" if _reads_as(scalar, value) else None
        return Problem(where, f"expected {_SCALARS[scalar]}, got the string {json.dumps(value)}", hint)
    message = _FRIENDLY.get(kind) or error["msg"].replace("Input should be", "must be")
    hint = ctx.get("hint") if isinstance(ctx.get("hint"), str) else None
    if kind == "value_error" or "hint" in ctx:  # a validator's own message says what is wrong, and shows the value
        return Problem(where, message.removeprefix("Value error, "), hint)
    if kind in ("literal_error", "enum") and isinstance(value, str):
        expected = str(ctx.get("expected", ""))
        words = re.findall(r"'([^']*)'", expected)
        hint = did_you_mean(value, words)
        if value.strip() in re.split(r", | or ", expected):
            hint = f"drop the quotes: {value.strip()}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        message = "must not be empty" if least == 1 else f"must have at least {least} items"
    if kind == "string_pattern_mismatch":
        message = f"{value!r} does not match the pattern {ctx['pattern']}"
        if loc and loc[-1] == "id":
            hint = (
                "use lowercase letters, digits, '_' and '-', starting with a letter"
                if len(loc) == 1
                else "use lowercase letters, digits and '_', starting with a letter or '_'"
            )
            return Problem(pointers.from_loc(loc, base), message, hint)
    elif "input" in error and not isinstance(value, dict | list):
        message = f"{message} (got {value!r})"
    return Problem(where, message, hint)


def _without_labels(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` without pydantic's union-member labels such as ``str`` or ``function-after[...]``."""
    return tuple(t for t in loc if not (isinstance(t, str) and ("[" in t or t in ("str", "int", "float", "bool"))))


def _reads_as(scalar: str, text: str) -> bool:
    """Whether ``text`` without its quotes is a JSON value of that kind ("0.9" is a number)."""
    try:
        value = json.loads(text.strip())
    except ValueError:
        return False
    if scalar == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if scalar == "int" else isinstance(value, int | float)


def _data_loc(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """pydantic's ``loc`` without the tags of tagged unions (``sections/4/text/body`` is
    ``sections/4/body`` in the document): a key that is not in the data is a tag, unless it is the
    last one (a missing or unknown field). An index into an object is a shorthand that a model
    wrapped into a list (``"checks": {...}`` read as ``[{...}]``): it is not in the document either."""
    out: list[str | int] = []
    for index, segment in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(data, dict) and segment in data:
            data = data[segment]
        elif isinstance(data, list) and isinstance(segment, int) and 0 <= segment < len(data):
            data = data[segment]
        elif isinstance(data, dict) and isinstance(segment, str) and not last:
            continue  # a union tag
        elif isinstance(data, dict) and segment == 0 and not last:
            continue  # an object read as a list of one
        else:
            data = None
        out.append(segment)
    return tuple(out)


def _at(data: Any, relative: str) -> Any:
    """The value at a pointer below ``data`` (None when there is none)."""
    for token in relative.split("/")[1:] if relative else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(data, dict):
            data = data.get(token)
        elif isinstance(data, list) and token.isdigit() and int(token) < len(data):
            data = data[int(token)]
        else:
            return None
    return data


# -- the annotation at a pydantic loc --------------------------------------------------------------


def _annotation_at(model: Any, loc: tuple[Any, ...]) -> Any:
    """The annotation found by walking pydantic's ``loc`` (with its union tags) from ``model``;
    a tagged union comes back as ``(union, discriminator)``, anything unknown as None."""
    current, discriminator = _unwrap(model, None)
    for token in loc:
        if current is None:
            return None
        current, discriminator = _step(current, discriminator, token)
    return (current, discriminator) if _is_union(current) else current


def _unwrap(annotation: Any, discriminator: Any) -> tuple[Any, Any]:
    """Without ``Annotated`` and ``| None``; the discriminator of a tagged union, if any."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            for meta in annotation.__metadata__:
                if isinstance(meta, FieldInfo) and meta.discriminator is not None:
                    discriminator = meta.discriminator
                elif isinstance(meta, Discriminator):
                    discriminator = meta
            annotation = annotation.__origin__
            continue
        if _is_union(annotation):
            rest = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(rest) == 1:
                annotation = rest[0]
                continue
        return annotation, discriminator


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _members(union: Any, discriminator: Any) -> list[tuple[Any, list[str]]]:
    """Each member of a union with the labels pydantic's loc may name it by (tags first)."""
    out = []
    for member in typing.get_args(union):
        tags = []
        if typing.get_origin(member) is typing.Annotated:
            tags = [m.tag for m in member.__metadata__ if isinstance(m, Tag)]
        core, _ = _unwrap(member, None)
        if isinstance(discriminator, str) and _is_model(core) and discriminator in core.model_fields:
            literal = core.model_fields[discriminator].annotation
            if typing.get_origin(literal) is typing.Literal:
                tags += [str(v) for v in typing.get_args(literal)]
        out.append((member, tags + ([core.__name__] if _is_model(core) else [])))
    return out


def _tags(found: Any, field: str) -> list[str]:
    if not isinstance(found, tuple):
        return []
    union, discriminator = found
    discriminator = discriminator if isinstance(discriminator, str) else field
    tags = []
    for member, labels in _members(union, discriminator):
        core, _ = _unwrap(member, None)
        tags += labels[:-1] if _is_model(core) else labels
    return tags


def _step(current: Any, discriminator: Any, token: Any) -> tuple[Any, Any]:
    if _is_union(current):
        for member, labels in _members(current, discriminator):
            if token in labels:
                return _unwrap(member, None)
        return None, None
    if _is_model(current):
        for name, info in current.model_fields.items():
            if token == name or token in _aliases(info):
                return _unwrap(info.annotation, info.discriminator)
        return None, None
    origin, args = typing.get_origin(current), typing.get_args(current)
    if origin in (list, set, frozenset) and args:
        return _unwrap(args[0], None)
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return _unwrap(args[0], None)
        return _unwrap(args[token], None) if isinstance(token, int) and token < len(args) else (None, None)
    if origin is dict and len(args) == 2:
        return _unwrap(args[1], None)
    return None, None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _aliases(info: FieldInfo) -> list[str]:
    names = [info.alias] if info.alias else []
    choices = info.validation_alias
    if isinstance(choices, str):
        names.append(choices)
    elif isinstance(choices, AliasChoices):
        names += [c for c in choices.choices if isinstance(c, str)]
    return names


def _field_names(model: Any) -> tuple[list[str], list[str]]:
    """The field names of a model as written in a document, and every name it accepts (aliases too)."""
    if not _is_model(model):
        return [], []
    names, accepted = [], []
    for name, info in model.model_fields.items():
        names.append(info.alias or name)
        accepted += [n for n in [name, *_aliases(info)] if n not in accepted]
    return names, accepted
