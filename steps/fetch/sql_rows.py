"""Fetching a query's rows for ``fetch.sql`` (SQLite and PostgreSQL alike): in batches, within
``max_rows`` and ``max_bytes``, and the message of its time limit."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine import StepError

_BATCH = 100  # rows of the first batch
_MAX_BATCH = 5_000


def stopped_message(timeout_s: float) -> str:
    return f"the query ran longer than timeout_s ({timeout_s:g} s) and was stopped"


def collect_rows(fetchmany: Callable[[int], list[Any]], max_rows: int, max_bytes: int) -> list[Any]:
    """Rows fetched in batches until there are none, failing as soon as ``max_rows`` or ``max_bytes``
    is passed. After a first batch of 100, a batch is what is left of ``max_bytes`` at the average
    row size so far (at most 5,000 rows, and one row past ``max_rows``), so that neither a result
    of many small rows takes many round trips nor one of large rows outgrows the limit in memory."""
    rows: list[Any] = []
    size = 0
    batch = min(_BATCH, max_rows + 1)
    while chunk := fetchmany(batch):
        for row in chunk:
            size += sum(_size(value) for value in row)
            rows.append(row)
            if size > max_bytes:
                raise StepError(
                    f"the query's result is larger than max_bytes ({max_bytes}) after {len(rows)} rows: "
                    "select fewer rows or columns (add a LIMIT), or raise max_bytes",
                    retryable=False,
                )
        if len(rows) > max_rows:
            raise StepError(
                f"the query returned more than max_rows ({max_rows}) rows: add a LIMIT or raise max_rows",
                retryable=False,
            )
        room = (max_bytes - size) // max(1, size // len(rows)) + 1
        batch = max(1, min(_MAX_BATCH, max_rows + 1 - len(rows), room))
    return rows


def _size(value: Any) -> int:
    """Bytes of one fetched value: a text's UTF-8 length, a blob's length, JSON and arrays (from
    PostgreSQL) their length as JSON, 8 for anything else (a number, a date)."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", errors="replace"))
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, (dict, list)):
        return len(json.dumps(value, default=str))
    return 0 if value is None else 8
