"""Storing step outputs: JSON inline, DataFrames as Parquet artifacts, bytes as artifacts.

``encode`` turns an output into JSON with small markers for what JSON cannot hold:

    {"$frame": SHA256}      a pandas DataFrame, stored as a Parquet artifact
    {"$bytes": SHA256}      raw bytes, stored as an artifact
    {"$datetime": ISO}      a datetime (or {"$date": ISO} for a date)

``decode`` reverses it, so a resumed run sees the same values its earlier attempt produced.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

from . import limits, redact
from .artifacts import ArtifactStore
from .errors import StepError
from .policy import sha256_of


def to_plain(value: Any) -> Any:
    """A pydantic model as a dict (recursively); other values unchanged."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python", by_alias=True)
    return value


def encode(value: Any, store: ArtifactStore, where: str = "output") -> Any:
    """The output as JSON with markers (see above). Raises StepError for a value that cannot be
    stored: an unknown type, or data nested deeper than ``limits.MAX_DEPTH`` levels."""
    try:
        return _encode(value, store, where, 0)
    except _TooDeep:
        path = limits.find_too_deep(to_plain(value))
        raise StepError(limits.too_deep_message(where, path or ()), retryable=False) from None
    except RecursionError:  # a safety net: a structure find_too_deep does not walk (a model, a set)
        raise StepError(f"{where} is nested too deeply to be stored", retryable=False) from None
    except MemoryError:
        raise StepError(f"{where} is too large to be stored", retryable=False) from None


class _TooDeep(Exception):
    pass


def _encode(value: Any, store: ArtifactStore, where: str, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return redact.redact(value) if isinstance(value, str) else value
    if isinstance(value, float):
        return value
    if isinstance(value, BaseModel):
        return _encode(to_plain(value), store, where, depth)
    if isinstance(value, dict | list | tuple | set | frozenset):
        if depth >= limits.MAX_DEPTH and value:
            raise _TooDeep
        if isinstance(value, dict):
            return {redact.redact(str(k)): _encode(v, store, f"{where}.{k}", depth + 1) for k, v in value.items()}
        return [_encode(v, store, f"{where}.{i}", depth + 1) for i, v in enumerate(value)]
    if _is_dataframe(value):
        buffer = io.BytesIO()
        try:
            value.to_parquet(buffer)
        except Exception as exc:  # pyarrow: a column of mixed types, nesting it cannot hold
            raise StepError(
                f"{where}: the DataFrame cannot be stored as Parquet: {type(exc).__name__}: {exc}", retryable=False
            ) from None
        ref = store.put_bytes(buffer.getvalue(), "application/vnd.apache.parquet")
        return {"$frame": ref.sha256}
    if isinstance(value, bytes | bytearray):
        return {"$bytes": store.put_bytes(bytes(value)).sha256}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return _encode(value.value, store, where, depth)
    if isinstance(value, PurePath):
        return str(value)
    raise StepError(
        f"{where}: a {type(value).__module__}.{type(value).__qualname__} cannot be stored; "
        "return JSON values, pydantic models, DataFrames, bytes or datetimes",
        retryable=False,
    )


def decode(value: Any, store: ArtifactStore) -> Any:
    """An encoded output back as values (DataFrames, bytes, datetimes for the markers)."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key,) = value
            if key == "$frame":
                import pandas as pd

                return pd.read_parquet(store.path_for(value[key]))
            if key == "$bytes":
                return store.read_bytes(value[key])
            if key == "$datetime":
                return dt.datetime.fromisoformat(value[key])
            if key == "$date":
                return dt.date.fromisoformat(value[key])
        out: dict[str, Any] = {}
        for k, v in value.items():  # loops, not comprehensions: one frame per level
            out[k] = decode(v, store)
        return out
    if isinstance(value, list):
        items = []
        for v in value:
            items.append(decode(v, store))
        return items
    return value


def _is_dataframe(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas") and hasattr(value, "to_parquet")


def output_hash(encoded: Any) -> str:
    """SHA-256 of the canonical JSON of an encoded output (what ``step_runs.output_hash`` holds)."""
    return sha256_of(encoded)
