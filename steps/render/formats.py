"""Writing values as people read them: numbers, percents, currencies, dates.

A format is the dict the report spec dumps (``{"type": "currency", "currency": "EUR", "decimals":
0, ...}``); ``format_value(1234.5, fmt)`` returns ``"€1,234.50"``. Missing values are an en dash.

Every number is rounded here, by :func:`fixed`, and only here: half up (away from zero), as people
round by hand and as the docs' format table shows (``$1,235`` for 1234.5 with no decimals), not
Python's half-to-even. A float is read as the decimal number it prints as (its shortest ``repr``),
so 2.675, stored as 2.67499999..., rounds to 2.68.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "¥", "INR": "₹", "KRW": "₩", "CHF": "CHF "}
MISSING = "–"
_DEFAULT_DECIMALS = {"number": 2, "percent": 1, "currency": 2, "integer": 0}
NUMERIC = ("int", "float", "decimal")


ROUNDING = {"half_up": decimal.ROUND_HALF_UP, "half_even": decimal.ROUND_HALF_EVEN}
"""The rounding rules a format can name with ``"rounding"``; ``half_up`` is the default."""


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


def fixed(value: int | float, places: int, rounding: str | None = None, scale: int = 0) -> str:
    """``value`` times 10**scale with ``places`` decimals and thousands separators, rounded half up.

    ``fixed(1234.5, 0) == "1,235"``, ``fixed(2.675, 2) == "2.68"``, ``fixed(0.0125, 1, scale=2) == "1.3"``
    (a percent); ``rounding="half_even"`` gives ``"1,234"``. A result that rounds to zero has no sign.
    """
    mode = ROUNDING.get(rounding or "half_up")
    if mode is None:
        raise ValueError(f"rounding must be one of {', '.join(map(repr, ROUNDING))}, not {rounding!r}")
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value:,.{places}f}"  # nan, inf: nothing to round
    # float.__repr__: the shortest text of the float, also for numpy's float64 (whose repr names its type)
    number = decimal.Decimal(float.__repr__(value) if isinstance(value, float) else int(value)).scaleb(scale)
    # enough digits for any magnitude, so quantize never runs out of precision
    context = decimal.Context(prec=max(28, number.adjusted() + places + 2))
    rounded = number.quantize(decimal.Decimal(1).scaleb(-places), rounding=mode, context=context)
    if rounded.is_zero():
        rounded = rounded.copy_abs()  # -0.004 is "0.00", not "-0.00"
    return f"{rounded:,.{places}f}"


def _format(value: Any, kind: str, fmt: dict[str, Any]) -> str:
    decimals = fmt.get("decimals")
    if kind in _DEFAULT_DECIMALS and is_number(value):
        places = _DEFAULT_DECIMALS[kind] if decimals is None else decimals
        rounding = fmt.get("rounding")
        if kind == "percent":
            return f"{fixed(value, places, rounding, scale=2)}%"
        if kind == "currency":
            code = fmt.get("currency", "USD")
            symbol = SYMBOLS.get(code, f"{code} ")
            text = fixed(value, places, rounding)
            sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
            return f"{sign}{symbol}{digits}"
        return fixed(value, places, rounding)
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
    rounding = base.get("rounding")
    if base.get("type") == "percent":  # a change of a percent is in points
        places = 1 if base.get("decimals") is None else base["decimals"]
        return f"{sign}{fixed(abs(delta), places, rounding, scale=2)} pts"
    text = format_value(abs(delta), base)
    if delta_pct is None:
        return f"{sign}{text}"
    return f"{sign}{text} ({sign}{fixed(abs(delta_pct), 1, rounding, scale=2)}%)"


def align_for(dtype: str | None, fmt: dict[str, Any] | None) -> str:
    kind = (fmt or {}).get("type", "auto")
    if kind in ("number", "integer", "percent", "currency") or (kind == "auto" and dtype in NUMERIC):
        return "right"
    return "left"
