"""The one Jinja2 sandbox every template in the engine and its stages renders in.

Jinja2's sandbox keeps templates away from Python internals, but not from arithmetic:
``{{ 9 ** (9 ** 9) }}`` computes a number of 8.5 million digits while holding the interpreter
(no timeout or signal gets through), and Jinja2 even folds such constants when it *compiles* the
template, so ``engine validate`` froze too. Here ``+ * ** %`` are intercepted: Jinja2 then leaves
them out of constant folding and calls :meth:`call_binop`, which applies them through
:func:`engine.limits.checked_operator` (integers of at most ``MAX_INT_DIGITS`` digits, strings and
lists of at most ``MAX_LENGTH`` items). The padding of strings (``'x'.ljust(10 ** 9)``, ``str.format``, the
``center``, ``indent`` and ``format`` filters) is limited to ``MAX_LENGTH`` characters too, and
``range`` keeps Jinja2's own limit of 100,000 items.

A limit hit inside a template raises :class:`engine.limits.LimitError`.

Example::

    env = sandbox_environment(autoescape=False)
    env.from_string("{{ 2 ** 10 }}").render()  # '1024'
"""

from __future__ import annotations

import re
from functools import update_wrapper
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment, SandboxedFormatter
from markupsafe import EscapeFormatter, Markup

from .limits import MAX_LENGTH, LimitError, check_format, checked_operator

_INTERCEPTED = frozenset({"+", "*", "**", "%"})
_PADDING = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _too_wide(name: str, args: Any) -> None:
    if any(isinstance(a, int) and a > MAX_LENGTH for a in args):
        raise LimitError(f"{name}() wider than {MAX_LENGTH} characters is not allowed")


def _limited_filters(filters: dict[str, Any]) -> None:
    """``format``, ``center`` and ``indent`` pad text in Python, out of reach of ``call_binop``."""
    plain_format, center, indent = filters["format"], filters["center"], filters["indent"]

    def format_(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            check_format(value)
        return plain_format(value, *args, **kwargs)

    def center_(value: Any, width: int = 80) -> Any:
        _too_wide("center", [width])
        return center(value, width)

    def indent_(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> Any:
        _too_wide("indent", [width])
        return indent(value, width, *args, **kwargs)

    filters.update(format=format_, center=center_, indent=indent_)


_DIGITS = re.compile(r"\d+")


class _LimitedFormatter(SandboxedFormatter):
    """``str.format`` in a template: a field's width or precision (after ``{}`` in the spec is
    filled in) may not pass ``MAX_LENGTH``, so ``'{:>999999999}'.format(1)`` is refused."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        if any(len(n) > 7 or int(n) > MAX_LENGTH for n in _DIGITS.findall(format_spec)):
            raise LimitError(f"a str.format width or precision above {MAX_LENGTH} is not allowed")
        return super().format_field(value, format_spec)


class _LimitedEscapeFormatter(_LimitedFormatter, EscapeFormatter):
    pass


class _Limits:
    """The limits, mixed into both sandboxes."""

    def wrap_str_format(self, value: Any) -> Any:
        """Jinja2's sandboxed ``str.format``/``format_map``, with :class:`_LimitedFormatter`."""
        if super().wrap_str_format(value) is None:  # type: ignore[misc]
            return None
        text = value.__self__
        formatter = (
            _LimitedEscapeFormatter(self, escape=text.escape) if isinstance(text, Markup) else _LimitedFormatter(self)  # type: ignore[arg-type]
        )
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument, and no keyword arguments")
                kwargs, args = args[0], ()
            return type(text)(formatter.vformat(text, args, kwargs))

        return update_wrapper(wrapper, value)

    intercepted_binops = _INTERCEPTED

    def _add_limits(self) -> None:
        _limited_filters(self.filters)  # type: ignore[attr-defined]

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return checked_operator(operator, left, right)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(__obj, "__name__", None) in _PADDING and isinstance(getattr(__obj, "__self__", None), str):
            _too_wide(__obj.__name__, [*args, *kwargs.values()])
        return super().call(__context, __obj, *args, **kwargs)  # type: ignore[misc]


class LimitedSandbox(_Limits, SandboxedEnvironment):
    """A sandbox with the limits; templates may call methods that change lists and dicts."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._add_limits()


class LimitedImmutableSandbox(_Limits, ImmutableSandboxedEnvironment):
    """A sandbox with the limits in which templates cannot change any value."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._add_limits()


def sandbox_environment(immutable: bool = True, **options: Any) -> SandboxedEnvironment:
    """A Jinja2 sandbox with the engine's limits; ``options`` go to ``jinja2.Environment``
    (``undefined``, ``autoescape``, ``loader``...). ``immutable=False`` for templates that may call
    ``list.append`` and the like on their own values."""
    return (LimitedImmutableSandbox if immutable else LimitedSandbox)(**options)
