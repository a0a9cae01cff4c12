"""Freezing data into the snapshot: columnar JSON (columns, dtypes, values) and its SHA-256.

The canonical encoding is JSON with sorted keys, no spaces, UTF-8, and no NaN: every value is
``null``, a bool, an int, a float, a string, or a list or object of those. The same data always
gives the same bytes, so the same hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from decimal import Decimal
from typing import Any

from engine import StepError


def as_frame(value: Any, what: str) -> Any:
    """A DataFrame from a DataFrame or a list of records."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, list) and all(isinstance(r, dict) for r in value):
        return pd.DataFrame.from_records(value)
    hint = " (for a fetch or transform step, use ctx.STEP.data)" if isinstance(value, dict) and "data" in value else ""
    raise StepError(f"{what}: data must be a DataFrame or a list of records, not {type(value).__name__}{hint}")


def dtype_name(series: Any) -> str:
    """A small, stable dtype vocabulary: int, float, decimal, bool, date, datetime, str, object."""
    import pandas as pd
    from pandas.api import types

    if types.is_bool_dtype(series.dtype):
        return "bool"
    if types.is_integer_dtype(series.dtype):
        return "int"
    if types.is_float_dtype(series.dtype):
        return "float"
    if isinstance(series.dtype, pd.DatetimeTZDtype) or types.is_datetime64_any_dtype(series.dtype):
        return "datetime"
    sample = next((v for v in series if v is not None and not _is_nan(v)), None)
    if isinstance(sample, Decimal):
        return "decimal"
    if isinstance(sample, dt.datetime):
        return "datetime"
    if isinstance(sample, dt.date):
        return "date"
    if isinstance(sample, bool):
        return "bool"
    if isinstance(sample, int):
        return "int"
    if isinstance(sample, float):
        return "float"
    if isinstance(sample, str) or sample is None:
        return "str"
    return "object"


def json_value(value: Any) -> Any:
    """One cell as a JSON value (Decimal as float, dates as ISO text, NaN/NaT as null)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Decimal):
        return None if not value.is_finite() else float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return json_value(item())
    if _is_nan(value):
        return None
    iso = getattr(value, "isoformat", None)  # pandas Timestamp
    if callable(iso):
        return iso()
    return str(value)


def _is_nan(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def freeze(frame: Any, columns: list[str]) -> dict[str, Any]:
    """``{"columns": [...], "dtypes": [...], "values": [[column 0...], [column 1...]]}``."""
    return {
        "columns": list(columns),
        "dtypes": [dtype_name(frame[c]) for c in columns],
        "values": [[json_value(v) for v in frame[c].tolist()] for c in columns],
    }


def records(frozen: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a frozen frame as dicts (for conditions over ``ctx.row``)."""
    names, values = frozen["columns"], frozen["values"]
    count = len(values[0]) if values else 0
    return [{name: values[i][r] for i, name in enumerate(names)} for r in range(count)]


def aggregate(frame: Any, column: str, agg: str) -> Any:
    series = frame[column]
    if agg == "count":
        return int(series.count())
    clean = series.dropna()
    if clean.empty:
        return None
    if agg == "last":
        return json_value(clean.iloc[-1])
    if agg == "mean":
        return (
            json_value(sum(clean.tolist()) / len(clean))
            if dtype_name(series) == "decimal"
            else json_value(clean.mean())
        )
    result = {"sum": clean.sum, "min": clean.min, "max": clean.max}[agg]()
    return json_value(result)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()
