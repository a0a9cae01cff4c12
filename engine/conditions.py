"""The condition DSL used by ``skip_if`` (and by steps that take conditions): JSON, never eval.

    true | false
    {"ref": "ctx.PATH", "op": OP, "value": LITERAL | {"ref": "ctx.PATH"}}
    {"all": [COND, ...]}    {"any": [COND, ...]}    {"not": COND}

OP is one of eq ne lt le gt ge in not_in contains exists is_empty not_empty; the last three
take no ``value``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any, ClassVar

from . import pointers
from .errors import ConditionError, Problem, did_you_mean
from .values import _MISSING, RunContext, expression_kind, parse_ref

COMPARE_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains")
UNARY_OPS = ("exists", "is_empty", "not_empty")
OPS = COMPARE_OPS + UNARY_OPS
_MISSING_OK = UNARY_OPS


@dataclass(frozen=True)
class RefOperand:
    path: tuple[str, ...]
    pointer: str


class Condition:
    """A parsed condition. ``evaluate(ctx)`` returns a bool or raises ConditionError."""

    pointer: str

    def refs(self) -> Iterator[RefOperand]:
        return iter(())

    def evaluate(self, ctx: RunContext) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Condition):
    value: bool
    pointer: str

    def evaluate(self, ctx: RunContext) -> bool:
        return self.value


@dataclass(frozen=True)
class Compare(Condition):
    left: RefOperand
    op: str
    right: Any  # a literal or a RefOperand
    pointer: str

    def refs(self) -> Iterator[RefOperand]:
        yield self.left
        if isinstance(self.right, RefOperand):
            yield self.right

    def evaluate(self, ctx: RunContext) -> bool:
        left = ctx.lookup_or_missing(self.left.path)
        where = self.pointer or "/"
        if left is _MISSING and self.op not in _MISSING_OK:
            path = "ctx." + ".".join(self.left.path)
            raise ConditionError(
                f"condition at {where}: ref {path} not found "
                "(use op 'exists' or 'is_empty' to test for a path that may be missing)"
            )
        if self.op == "exists":
            return left is not _MISSING and left is not None
        if self.op == "is_empty":
            return _is_empty(left)
        if self.op == "not_empty":
            return not _is_empty(left)
        right = self.right
        if isinstance(right, RefOperand):
            right = ctx.lookup_or_missing(right.path)
            if right is _MISSING:
                path = "ctx." + ".".join(self.right.path)
                raise ConditionError(f"condition at {where}: ref {path} (the value) not found")
        try:
            return bool(_compare(self.op, left, right))
        except TypeError as exc:
            raise ConditionError(
                f"condition at {where}: cannot apply {self.op!r} to "
                f"{type(left).__name__} {_short(left)} and {type(right).__name__} {_short(right)}"
            ) from exc


@dataclass(frozen=True)
class Combine(Condition):
    mode: str  # "all" | "any"
    items: tuple[Condition, ...]
    pointer: str

    def refs(self) -> Iterator[RefOperand]:
        for item in self.items:
            yield from item.refs()

    def evaluate(self, ctx: RunContext) -> bool:
        results = (item.evaluate(ctx) for item in self.items)
        return all(results) if self.mode == "all" else any(results)


@dataclass(frozen=True)
class Not(Condition):
    item: Condition
    pointer: str

    def refs(self) -> Iterator[RefOperand]:
        return self.item.refs()

    def evaluate(self, ctx: RunContext) -> bool:
        return not self.item.evaluate(ctx)


def _equal(left: Any, right: Any) -> bool:
    # JSON semantics: true is not 1 and false is not 0
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return bool(left == right)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "eq":
        return _equal(left, right)
    if op == "ne":
        return not _equal(left, right)
    if op == "lt":
        return bool(left < right)
    if op == "le":
        return bool(left <= right)
    if op == "gt":
        return bool(left > right)
    if op == "ge":
        return bool(left >= right)
    if op == "in":
        return left in right
    if op == "not_in":
        return left not in right
    if op == "contains":
        return right in left
    raise ConditionError(f"unknown op {op!r}")  # pragma: no cover - parse rejects it


def _is_empty(value: Any) -> bool:
    if value is _MISSING or value is None:
        return True
    empty = getattr(value, "empty", None)  # DataFrames and Series
    if isinstance(empty, bool):
        return empty
    if isinstance(value, Sized):
        return len(value) == 0
    return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- parsing -----------------------------------------------------------------------------


class ConditionParser:
    """Parse a raw JSON condition, collecting every problem with its pointer."""

    _KEYS: ClassVar[tuple[str, ...]] = ("ref", "op", "value", "all", "any", "not")

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def parse(self, raw: Any, pointer: str) -> Condition | None:
        if isinstance(raw, bool):
            return Constant(raw, pointer)
        if not isinstance(raw, Mapping):
            return self._fail(pointer, f"a condition must be an object or true/false, not {_json_type(raw)}")
        for key in ("all", "any"):
            if key in raw:
                return self._combine(raw, key, pointer)
        if "not" in raw:
            if len(raw) != 1:
                return self._fail(pointer, "'not' takes no other keys", 'write {"not": CONDITION}')
            inner = self.parse(raw["not"], pointers.join(pointer, "not"))
            return Not(inner, pointer) if inner is not None else None
        if "ref" in raw or "op" in raw:
            return self._compare(raw, pointer)
        keys = ", ".join(map(repr, raw)) or "none"
        hint = did_you_mean(next(iter(raw), ""), self._KEYS)
        return self._fail(pointer, f"not a condition (keys: {keys})", hint or _SHAPES)

    def _combine(self, raw: Mapping[str, Any], key: str, pointer: str) -> Condition | None:
        if len(raw) != 1:
            others = ", ".join(repr(k) for k in raw if k != key)
            return self._fail(pointer, f"{key!r} takes no other keys (found {others})")
        items = raw[key]
        if not isinstance(items, list) or not items:
            return self._fail(pointers.join(pointer, key), f"{key!r} takes a non-empty list of conditions")
        parsed = [self.parse(item, pointers.join(pointer, key, i)) for i, item in enumerate(items)]
        if any(p is None for p in parsed):
            return None
        return Combine(key, tuple(p for p in parsed if p is not None), pointer)

    def _compare(self, raw: Mapping[str, Any], pointer: str) -> Condition | None:
        ok = True
        for key in raw:
            if key not in ("ref", "op", "value"):
                hint = did_you_mean(key, ("ref", "op", "value"))
                self._fail(pointers.join(pointer, key), f"unknown key {key!r} in a comparison", hint)
                ok = False
        left = self._ref(raw.get("ref"), pointers.join(pointer, "ref"), required=True)
        op = raw.get("op")
        if op not in OPS:
            hint = (did_you_mean(op, OPS) if isinstance(op, str) else None) or "ops: " + " ".join(OPS)
            self._fail(pointers.join(pointer, "op"), f"unknown op {op!r}" if op else "missing 'op'", hint)
            ok = False
        right: Any = None
        if op in UNARY_OPS:
            if "value" in raw:
                self._fail(pointers.join(pointer, "value"), f"op {op!r} takes no 'value'")
                ok = False
        elif op in COMPARE_OPS:
            if "value" not in raw:
                self._fail(pointer, f"op {op!r} needs a 'value' (a literal or {{\"ref\": ...}})")
                ok = False
            else:
                right = raw["value"]
                if expression_kind(right) == "ref":
                    right = self._ref(right["ref"], pointers.join(pointer, "value", "ref"), required=True)
                    ok = ok and right is not None
                elif expression_kind(right) is not None:
                    self._fail(pointers.join(pointer, "value"), 'a condition value is a literal or a {"ref": ...}')
                    ok = False
        if not ok or left is None:
            return None
        return Compare(left, str(op), right, pointer)

    def _ref(self, text: Any, pointer: str, required: bool) -> RefOperand | None:
        if text is None:
            self._fail(pointer, "missing 'ref'", 'a comparison starts with {"ref": "ctx.step.field", ...}')
            return None
        try:
            return RefOperand(parse_ref(text), pointer)
        except ValueError as exc:
            self._fail(pointer, str(exc))
            return None

    def _fail(self, pointer: str, message: str, hint: str | None = None) -> Condition | None:
        """Record a problem; returns None so parse methods can ``return self._fail(...)``."""
        self.problems.append(Problem(pointer, message, hint))
        return None


_SHAPES = 'use true/false, {"ref", "op", "value"}, {"all": [...]}, {"any": [...]} or {"not": ...}'


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {str: "a string", int: "a number", float: "a number", list: "a list"}.get(type(value), type(value).__name__)


def parse_condition(raw: Any, pointer: str = "") -> Condition:
    """Parse a condition or raise ConditionError listing every problem."""
    parser = ConditionParser()
    cond = parser.parse(raw, pointer)
    if cond is None:
        raise ConditionError("; ".join(str(p) for p in parser.problems), retryable=False)
    return cond


def evaluate(raw: Any, ctx: RunContext, pointer: str = "") -> bool:
    """Parse and evaluate a raw condition against ``ctx``."""
    return parse_condition(raw, pointer).evaluate(ctx)


# -- public helpers for plugins that evaluate conditions against data of their own --------------


class _MappingContext(RunContext):
    """A run context over a plain mapping: ``ctx.a.b`` reads ``data["a"]["b"]``."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__({}, {})
        self.data = dict(data)


def check_condition(raw: Any, pointer: str = "") -> list[Problem]:
    """The problems of a raw condition (empty when it parses), for ``Step.check``.

    Refs are parsed, not looked up: the data they read is the plugin's own.
    """
    parser = ConditionParser()
    parser.parse(raw, pointer)
    return parser.problems


def evaluate_condition(raw: Any, data: Mapping[str, Any], where: str = "") -> bool:
    """Evaluate a raw condition against ``data`` instead of the run context.

    ``{"ref": "ctx.metrics.revenue", "op": "gt", "value": 0}`` reads ``data["metrics"]["revenue"]``,
    with the rules of docs/conditions.md (missing paths, ``null``, type mismatches). Raises
    ConditionError naming ``where``.
    """
    return parse_condition(raw, where).evaluate(_MappingContext(data))
