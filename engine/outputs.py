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

from . import redact
from .artifacts import ArtifactStore
from .errors import StepError
from .policy import sha256_of


def to_plain(value: Any) -> Any:
    """A pydantic model as a dict (recursively); other values unchanged."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python", by_alias=True)
    return value


def encode(value: Any, store: ArtifactStore, where: str = "output") -> Any:
    if value is None or isinstance(value, bool | int | str):
        return redact.redact(value) if isinstance(value, str) else value
    if isinstance(value, float):
        return value
    if isinstance(value, BaseModel):
        return encode(to_plain(value), store, where)
    if isinstance(value, dict):
        return {redact.redact(str(k)): encode(v, store, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [encode(v, store, f"{where}.{i}") for i, v in enumerate(value)]
    if _is_dataframe(value):
        buffer = io.BytesIO()
        value.to_parquet(buffer)
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
        return encode(value.value, store, where)
    if isinstance(value, PurePath):
        return str(value)
    raise StepError(
        f"{where}: a {type(value).__module__}.{type(value).__qualname__} cannot be stored; "
        "return JSON values, pydantic models, DataFrames, bytes or datetimes",
        retryable=False,
    )


def decode(value: Any, store: ArtifactStore) -> Any:
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
        return {k: decode(v, store) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v, store) for v in value]
    return value


def _is_dataframe(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas") and hasattr(value, "to_parquet")


def output_hash(encoded: Any) -> str:
    """SHA-256 of the canonical JSON of an encoded output (what ``step_runs.output_hash`` holds)."""
    return sha256_of(encoded)
