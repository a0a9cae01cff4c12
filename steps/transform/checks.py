"""The value checks of ``transform.validate``, and how a failing row's reason reads.

A reason is written for the person who opens the quarantine, not for a programmer:
``amount must be >= 0 (got -120.00)``, ``month is missing``, ``order_id 7 is a duplicate (first
seen in row 2)``. The same sentence without the value (``amount must be >= 0``) counts the
failures in the step's ``stats``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

CHECKS = ("ge", "gt", "le", "lt", "eq", "ne", "in_range", "isin", "str_matches", "str_length")
_SHOWN_CHOICES = 10

DTYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "datetime": "a date and time",
    "date": "a date",
    "decimal": "a decimal number",
}


class CheckRule(BaseModel):
    """One or more of: ge, gt, le, lt, eq, ne, in_range, isin, str_matches, str_length; each key is one check."""

    model_config = ConfigDict(extra="forbid")
    ge: Any = None
    gt: Any = None
    le: Any = None
    lt: Any = None
    eq: Any = None
    ne: Any = None
    in_range: tuple[Any, Any] | None = None
    isin: list[Any] | None = None
    str_matches: str | None = None
    str_length: tuple[int | None, int | None] | None = None

    @model_validator(mode="after")
    def _some(self) -> CheckRule:
        if not self.items():
            raise ValueError(f"a check needs at least one of {', '.join(CHECKS)}")
        if self.str_length == (None, None):
            raise ValueError("str_length needs a minimum or a maximum, e.g. [1, null]")
        return self

    def items(self) -> list[tuple[str, Any]]:
        """``(kind, argument)`` of each check this object sets, in the order of ``CHECKS``."""
        return [(name, getattr(self, name)) for name in CHECKS if getattr(self, name) is not None]


def build(kind: str, arg: Any) -> Any:
    """The pandera check for one ``(kind, argument)``."""
    import pandera.pandas as pa

    if kind == "in_range":
        return pa.Check.in_range(arg[0], arg[1])
    if kind == "str_length":
        return pa.Check.str_length(arg[0], arg[1])
    return getattr(pa.Check, kind)(arg)


def requirement(kind: str, arg: Any) -> str:
    """What a check asks of a value, as in ``amount must be >= 0``: ``must be >= 0``."""
    if kind in ("ge", "gt", "le", "lt"):
        sign = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[kind]
        return f"must be {sign} {show(arg)}"
    if kind == "eq":
        return f"must be {show(arg)}"
    if kind == "ne":
        return f"must not be {show(arg)}"
    if kind == "in_range":
        return f"must be between {show(arg[0])} and {show(arg[1])}"
    if kind == "isin":
        shown = ", ".join(show(v) for v in arg[:_SHOWN_CHOICES])
        more = f" and {len(arg) - _SHOWN_CHOICES} more" if len(arg) > _SHOWN_CHOICES else ""
        return f"must be one of {shown}{more}"
    if kind == "str_matches":
        return f"must match the pattern {arg}"
    if kind == "str_length":
        least, most = arg
        if most is None:
            return f"must be at least {least} characters long"
        if least is None:
            return f"must be at most {most} characters long"
        return f"must be {least} to {most} characters long"
    return f"must pass {kind} {show(arg)}"


def show(value: Any) -> str:
    """A value as a reader writes it: text quoted, numbers and dates plain (``-120.00``, ``2026-01-31``)."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):  # also datetime and pandas' Timestamp
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "(" + ", ".join(show(v) for v in value) + ")"
    return str(value)
