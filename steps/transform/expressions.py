"""Safe column arithmetic for ``derive``: parsed with ``ast`` against an allowlist, never eval'd.

Allowed: column names, numbers, strings, ``True``/``False``/``None``, ``+ - * / // % **``,
comparisons (chained too), ``and``/``or``/``not``, unary ``-``/``+``, and the functions
``round``, ``abs``, ``min``, ``max``. Anything else (attributes, subscripts, lambdas, other
calls, names that are not columns) is refused with the offending piece named.

Column names that are not Python identifiers are written in backticks: ```unit price` * qty``.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from typing import Any

from engine import MAX_DEPTH, LimitError, checked_operator

_BINARY: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_FUNCTIONS = ("round", "abs", "min", "max")
_BACKTICK = re.compile(r"`([^`]+)`")


class ExpressionError(ValueError):
    """The expression is not allowed or names a column the frame lacks."""


def compile_expression(text: str, columns: list[str] | None) -> ast.Expression:
    """Parse and check ``text``; raise ExpressionError naming what is not allowed.

    With ``columns=None`` (validation, before the data exists) names are not checked."""
    aliases: dict[str, str] = {}

    def quote(match: re.Match[str]) -> str:
        alias = f"__col{len(aliases)}"
        aliases[alias] = match.group(1)
        return alias

    source = _BACKTICK.sub(quote, text)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error at column {exc.offset}: {exc.msg}") from None
    except (RecursionError, MemoryError):  # Python's parser gives up on very deep nesting
        raise ExpressionError(f"the expression is nested deeper than {MAX_DEPTH} levels") from None
    if _depth(tree.body) > MAX_DEPTH:
        raise ExpressionError(f"the expression is nested deeper than {MAX_DEPTH} levels")
    for node in ast.walk(tree):
        _check(node, columns, aliases)
    _constant(tree.body)
    tree.aliases = aliases  # type: ignore[attr-defined]
    return tree


def _depth(root: ast.AST) -> int:
    """How deep the tree is (iterative: a long chain ``1+1+...`` is deep)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


_VARIABLE = object()


def _constant(node: ast.AST) -> Any:
    """The value of a sub-expression made of constants only, computed within the engine's limits
    (so ``(9 ** 1000) ** 1000`` is refused here, at validation); ``_VARIABLE`` otherwise."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _constant(node.operand)
        if isinstance(value, int | float) and value is not _VARIABLE:
            return -value if isinstance(node.op, ast.USub) else value
        return _VARIABLE
    if isinstance(node, ast.BinOp):
        left, right = _constant(node.left), _constant(node.right)
        if left is _VARIABLE or right is _VARIABLE:
            return _VARIABLE
        try:
            return checked_operator(_BINARY[type(node.op)], left, right)
        except LimitError as exc:
            raise ExpressionError(str(exc)) from None
        except (ArithmeticError, TypeError):  # 1 / 0, 'a' - 1: found when the step runs
            return _VARIABLE
    for child in ast.iter_child_nodes(node):  # e.g. a constant argument of round()
        _constant(child)
    return _VARIABLE


def _check(node: ast.AST, columns: list[str] | None, aliases: dict[str, str]) -> None:
    allowed = (
        ast.Expression,
        ast.BinOp,
        ast.UnaryOp,
        ast.BoolOp,
        ast.Compare,
        ast.Name,
        ast.Constant,
        ast.Call,
        ast.Load,
        ast.And,
        ast.Or,
        ast.Not,
        ast.USub,
        ast.UAdd,
        *_BINARY,
        *_COMPARE,
    )
    if not isinstance(node, allowed):
        raise ExpressionError(
            f"{type(node).__name__} is not allowed in an expression ({ast.unparse(node)!r})"
            if isinstance(node, ast.expr)
            else f"{type(node).__name__} is not allowed"
        )
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            raise ExpressionError(f"only {', '.join(_FUNCTIONS)} may be called, not {ast.unparse(node.func)!r}")
    elif isinstance(node, ast.Name) and columns is not None:
        name = aliases.get(node.id, node.id)
        if name not in columns and node.id not in _FUNCTIONS and node.id not in ("True", "False", "None"):
            raise ExpressionError(f"unknown column {name!r} (columns: {', '.join(columns)})")
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        exponent = node.right
        small = isinstance(exponent, ast.Constant) and isinstance(exponent.value, int | float)
        if not (isinstance(exponent, ast.Name) or (small and abs(exponent.value) <= 1000)):  # type: ignore[union-attr]
            raise ExpressionError("** takes a column or a number up to 1000 as its exponent")
    elif isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str | bool | type(None)):
        raise ExpressionError(f"constant {node.value!r} is not allowed")


def evaluate(tree: ast.Expression, frame: Any) -> Any:
    """Evaluate a checked expression over a DataFrame, column-wise (a Series or a scalar)."""
    aliases: dict[str, str] = getattr(tree, "aliases", {})
    return _eval(tree.body, frame, aliases)


def _eval(node: ast.AST, frame: Any, aliases: dict[str, str]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return frame[aliases.get(node.id, node.id)]
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, frame, aliases), _eval(node.right, frame, aliases)
        symbol = _BINARY[type(node.op)]
        if symbol == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        return checked_operator(symbol, left, right)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, frame, aliases)
        if isinstance(node.op, ast.Not):
            return ~value if hasattr(value, "__invert__") and not isinstance(value, bool) else not value
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, frame, aliases) for v in node.values]
        result = values[0]
        for value in values[1:]:
            result = (result & value) if isinstance(node.op, ast.And) else (result | value)
        return result
    if isinstance(node, ast.Compare):
        left = _eval(node.left, frame, aliases)
        result = None
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, frame, aliases)
            step = _COMPARE[type(op)](left, right)
            result = step if result is None else (result & step)
            left = right
        return result
    if isinstance(node, ast.Call):
        args = [_eval(a, frame, aliases) for a in node.args]
        return _call(node.func.id, args)  # type: ignore[attr-defined]
    raise ExpressionError(f"cannot evaluate {type(node).__name__}")  # pragma: no cover - _check refuses it


def _check_repeat(column: Any, count: Any) -> None:
    """A text column times a large number repeats every cell: ``name * 1000000000``."""
    dtype = getattr(column, "dtype", None)
    if dtype is not None and dtype.kind in "OSU" and isinstance(count, int) and abs(count) > MAX_REPEAT:
        raise ExpressionError(f"* {count} on the column {column.name!r} (text) would repeat each value {count} times")


MAX_REPEAT = 10_000


def _call(name: str, args: list[Any]) -> Any:
    import numpy as np

    if name == "abs" and len(args) == 1:
        return args[0].abs() if hasattr(args[0], "abs") else abs(args[0])
    if name == "round" and len(args) in (1, 2):
        digits = int(args[1]) if len(args) == 2 else 0
        if hasattr(args[0], "map") and args[0].dtype == object:  # Decimals: exact rounding
            return args[0].map(lambda v: round(v, digits) if v is not None else None)
        return args[0].round(digits) if hasattr(args[0], "round") else round(args[0], digits)
    if name in ("min", "max") and len(args) >= 2:
        combine = np.minimum if name == "min" else np.maximum
        result = args[0]
        for value in args[1:]:
            result = combine(result, value)
        return result
    raise ExpressionError(f"{name}() got {len(args)} arguments")
