"""Limits on the size of what policies, step outputs, expressions and templates may hold.

Hostile or broken input must give a clear error, never a crash or a frozen process:

- ``MAX_DEPTH``: lists and objects nested inside each other, in a policy document, a
  ``--param`` value or a step's output. Deeper data would exhaust Python's recursion limit in the
  walks that read it (validation, value resolution, storing outputs).
- ``MAX_INT_DIGITS``: digits of an integer written in a policy or a ``--param``, or made by
  arithmetic in an expression or a template. ``9 ** (9 ** 9)`` would hold the interpreter (and
  its lock: no timeout or signal gets through) for minutes.
- ``MAX_LENGTH``: characters of a string, or items of a list, made by ``*`` or ``+`` in an
  expression or a template (``'x' * 10 ** 9``).

:func:`checked_operator` applies an arithmetic operator after checking that its result stays
within the limits, without computing it first; the template sandbox (:mod:`engine.sandbox`) and
the ``derive`` expressions of the transform stage use it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

from . import pointers

MAX_DEPTH = 200
MAX_INT_DIGITS = 1000
MAX_LENGTH = 1_000_000
_INT_BOUND = 10**MAX_INT_DIGITS

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}
_SEQUENCES = (str, bytes, list, tuple)


class LimitError(ValueError):
    """A value would go beyond one of the limits above; the message names the limit."""


def find_too_deep(value: Any, limit: int = MAX_DEPTH) -> tuple[str | int, ...] | None:
    """The path to the first value nested deeper than ``limit`` lists/objects, or None.

    Iterative, so that it works on data of any depth. ``[[1]]`` holds ``1`` at depth 2 (path
    ``(0, 0)``).
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            children: list[tuple[str | int, Any]] = list(item.items())
        elif isinstance(item, list | tuple):
            children = list(enumerate(item))
        else:
            continue
        if children and len(path) >= limit:
            return (*path, children[0][0])
        # reversed: the first child is visited first, so the path found is the first in the text
        stack.extend(
            (child, (*path, key)) for key, child in reversed(children) if isinstance(child, dict | list | tuple)
        )
    return None


def short_pointer(path: tuple[str | int, ...], keep: int = 8) -> str:
    """A JSON pointer for ``path``, cut after ``keep`` segments: ``/data/0/0/0/...``."""
    text = pointers.join("", *path[:keep])
    return text + "/..." if len(path) > keep else text


def too_deep_message(what: str, path: tuple[str | int, ...]) -> str:
    """``output of step 'x' is nested deeper than 200 levels at /0/0/0/...``."""
    return f"{what} is nested deeper than {MAX_DEPTH} levels at {short_pointer(path)}"


def int_digits(value: int) -> int:
    """Decimal digits of ``value``, at most one too many (from its bit length: no conversion, which
    Python refuses above 4300 digits)."""
    return max(1, math.ceil(abs(value).bit_length() * math.log10(2)))


def check_int(value: int, what: str = "an integer") -> None:
    """Raise LimitError if ``value`` has more than ``MAX_INT_DIGITS`` digits."""
    if abs(value) >= _INT_BOUND:
        raise LimitError(f"{what} of about {int_digits(value)} digits is too large (at most {MAX_INT_DIGITS} digits)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, _SEQUENCES) else None


def checked_operator(symbol: str, left: Any, right: Any) -> Any:
    """``left SYMBOL right`` for ``+ - * / // % **``, refused with LimitError when the result
    would be an integer of more than ``MAX_INT_DIGITS`` digits or a string/list longer than
    ``MAX_LENGTH``. A power is judged from its operands, before computing anything.

    Other types (floats, Decimals, pandas Series) are passed through: their arithmetic is bounded
    already (a float overflows to an error or ``inf``).
    """
    if symbol == "**" and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        # digits of the result: right * log10(|left|), compared without computing the power
        if right.bit_length() > 64 or right * math.log10(abs(left)) >= MAX_INT_DIGITS:
            raise LimitError(
                f"{_short(left)} ** {_short(right)} would be an integer of more than {MAX_INT_DIGITS} digits"
            )
    elif symbol == "*":
        _check_repeat(left, right)
        _check_repeat(right, left)
    elif symbol == "+":
        left_len, right_len = _length(left), _length(right)
        if left_len is not None and right_len is not None and left_len + right_len > MAX_LENGTH:
            raise LimitError(
                f"+ would make a {type(left).__name__} of {left_len + right_len} items (at most {MAX_LENGTH})"
            )
    elif symbol == "%" and isinstance(left, str):
        check_format(left)
    result = _OPERATORS[symbol](left, right)
    if _is_int(result) and abs(result) >= _INT_BOUND:
        raise LimitError(
            f"{_short(left)} {symbol} {_short(right)} would be an integer of more than {MAX_INT_DIGITS} digits"
        )
    return result


def _check_repeat(sequence: Any, count: Any) -> None:
    size = _length(sequence)
    if size is not None and _is_int(count) and size * count > MAX_LENGTH:
        raise LimitError(
            f"{type(sequence).__name__} * {_short(count)} would make {size * count} items (at most {MAX_LENGTH})"
        )


_FORMAT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")


def check_format(text: str) -> None:
    """``'%999999999d' % x`` pads to a billion characters: refuse widths and precisions above the limit."""
    for match in _FORMAT_SPEC.finditer(text):
        if any(number and (len(number) > 7 or int(number) > MAX_LENGTH) for number in match.groups()):
            raise LimitError(f"a % format width or precision above {MAX_LENGTH} is not allowed")


def _short(value: Any) -> str:
    if _is_int(value) and int_digits(value) > 20:
        return f"<an integer of {int_digits(value)} digits>"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
