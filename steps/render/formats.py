"""Writing values as people read them: numbers, percents, currencies, dates.

A format is the dict the report spec dumps (``{"type": "currency", "currency": "EUR", "decimals":
0, ...}``); ``format_value(1234.5, fmt)`` returns ``"€1,234.50"``. Missing values are an en dash.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "¥", "INR": "₹", "KRW": "₩", "CHF": "CHF "}
MISSING = "–"
_DEFAULT_DECIMALS = {"number": 2, "percent": 1, "currency": 2, "integer": 0}
NUMERIC = ("int", "float", "decimal")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_value(value: Any, fmt: dict[str, Any] | str | None = None, dtype: str | None = None) -> str:
    """``format_value(0.25, "percent") == "25.0%"``; ``fmt`` is a format name or object."""
    fmt = {"type": fmt} if isinstance(fmt, str) else (fmt or {})
    kind = fmt.get("type", "auto")
    if value is None:
        return MISSING
    if kind == "auto":
        kind = _auto_kind(value, dtype)
    text = _format(value, kind, fmt)
    return f"{fmt.get('prefix', '')}{text}{fmt.get('suffix', '')}"


def _auto_kind(value: Any, dtype: str | None) -> str:
    if isinstance(value, bool):
        return "text"
    if isinstance(value, int) or dtype == "int":
        return "integer"
    if is_number(value):
        return "number"
    if dtype in ("date", "datetime"):
        return "date"
    return "text"


def _format(value: Any, kind: str, fmt: dict[str, Any]) -> str:
    decimals = fmt.get("decimals")
    if kind in _DEFAULT_DECIMALS and is_number(value):
        places = _DEFAULT_DECIMALS[kind] if decimals is None else decimals
        if kind == "percent":
            return f"{value * 100:,.{places}f}%"
        if kind == "currency":
            code = fmt.get("currency", "USD")
            symbol = SYMBOLS.get(code, f"{code} ")
            sign = "-" if value < 0 else ""
            return f"{sign}{symbol}{abs(value):,.{places}f}"
        return f"{value:,.{places}f}"
    if kind == "date":
        return _date(value, fmt.get("date_format", "%Y-%m-%d"))
    return str(value)


def _date(value: Any, pattern: str) -> str:
    if isinstance(value, str):
        try:
            parsed: dt.date = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        if len(value) == 10:
            parsed = parsed.date()
        return parsed.strftime(pattern)
    if isinstance(value, dt.date):
        return value.strftime(pattern)
    return str(value)


def format_delta(delta: Any, delta_pct: Any, fmt: dict[str, Any] | None) -> str:
    """``+€1,200 (+4.3%)``: the change in the value's own format, then relative."""
    if delta is None:
        return ""
    sign = "+" if delta > 0 else ("−" if delta < 0 else "±")
    base = dict(fmt or {})
    if base.get("type") == "percent":  # a change of a percent is in points
        text = f"{abs(delta) * 100:,.{1 if base.get('decimals') is None else base['decimals']}f} pts"
        return f"{sign}{text}"
    text = format_value(abs(delta), base)
    if delta_pct is None:
        return f"{sign}{text}"
    return f"{sign}{text} ({sign}{abs(delta_pct) * 100:,.1f}%)"


def align_for(dtype: str | None, fmt: dict[str, Any] | None) -> str:
    kind = (fmt or {}).get("type", "auto")
    if kind in ("number", "integer", "percent", "currency") or (kind == "auto" and dtype in NUMERIC):
        return "right"
    return "left"
