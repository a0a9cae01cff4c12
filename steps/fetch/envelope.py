"""The fetch envelope: what every fetch step returns around its data."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

CacheStatus = Literal["hit", "miss", "revalidated", "none"]


class FetchEnvelope(BaseModel):
    """Data plus where it came from. ``data`` is a DataFrame, parsed JSON, or text."""

    data: Any = Field(description="A DataFrame (tables), parsed JSON, or text.")
    content_type: str = Field(description="Media type of what was read, e.g. 'text/csv'.")
    status_code: int | None = Field(None, description="HTTP status; null for files and SQL.")
    url: str = Field(description="Where the data came from: an http(s) URL, or a file:// URI.")
    fetched_at: str = Field(description="UTC time of the fetch, ISO 8601.")
    cache_status: CacheStatus = Field("none", description="hit, miss or revalidated; 'none' when no cache is used.")
    content_hash: str = Field(description="SHA-256 of the raw bytes read.")
    pages: int = Field(1, description="Pages fetched (pagination); 1 otherwise.")
    warnings: list[str] = Field(default_factory=list)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolve_path(path: str, policy_dir: Path | None) -> Path:
    """A path relative to the policy file's folder unless it is absolute."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or policy_dir is None:
        return candidate
    return policy_dir / candidate


def initial_cursor(params: dict[str, Any]) -> dict[str, Any]:
    """``Step.initial_state`` of the incremental fetch steps: ``ctx.<step>.cursor`` before any
    successful run is ``incremental.initial_value``."""
    incremental = params.get("incremental")
    if isinstance(incremental, dict) and "initial_value" in incremental:
        return {"cursor": incremental["initial_value"]}
    return {}


def frame_high_water(frame: Any, field: str, cursor: Any, of: str = "") -> Any:
    """The largest ``field`` of a DataFrame, or ``cursor`` when it has no rows (incremental loading)."""
    from engine import StepError

    if field not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise StepError(f"incremental.cursor_field {field!r} is not a column{of} (it has: {columns})", retryable=False)
    if frame.empty:
        return cursor
    value = frame[field].max()
    return value.item() if hasattr(value, "item") else value
