"""``fetch.sql``: a read-only query against a SQLite database file, into a DataFrame.

Read-only three times over: the file is opened with ``mode=ro``, ``PRAGMA query_only`` is on,
and a default-deny authorizer allows only reading (SELECT, reads of columns, functions other
than ``load_extension``, recursive CTEs). Values reach the query only as named bind parameters.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import Step, StepContext, StepError

from .envelope import FetchEnvelope, frame_high_water, initial_cursor, resolve_path, sha256_hex, utc_now

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_PROGRESS_EVERY = 10_000  # SQLite VM instructions between deadline checks


def _authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() not in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class Incremental(BaseModel):
    """Incremental loading: only rows past the high-water mark of the last successful run."""

    model_config = ConfigDict(extra="forbid")
    cursor_field: str = Field(description="The column whose largest value becomes the next cursor.")
    initial_value: Any = Field(description="The cursor of the first run (before any run succeeded).")


class FetchSqlOutput(FetchEnvelope):
    cursor: Any = Field(None, description="With incremental: the cursor this run used (bound as :cursor).")
    next_cursor: Any = Field(
        None, description="With incremental: the new high-water mark, committed only if the run ends SUCCESS."
    )


class FetchSql(Step, type="fetch.sql"):
    """Run a read-only SQL query against a SQLite database file; the rows become a DataFrame.

    Values go in as named bind parameters (``:name`` in the query, ``params`` in the step),
    never by string interpolation. Anything but reading is refused (writes, ATTACH, PRAGMA,
    ``load_extension``). ``max_rows`` and ``timeout_s`` bound the query. With ``incremental``,
    the query reads the cursor of the last successful run as ``:cursor`` (or through a param
    set to ``{"ref": "ctx.<this step>.cursor"}``).
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        database: str = Field(description="SQLite file; relative to the policy file's folder unless absolute.")
        query: str = Field(description="One SELECT (or WITH ... SELECT) statement, with :name placeholders.")
        params: dict[str, Any] = Field(default_factory=dict, description="Values for the :name placeholders.")
        max_rows: int = Field(100_000, ge=1, description="More rows than this fails the step (add a LIMIT).")
        timeout_s: float = Field(30, gt=0, description="The query is interrupted after this many seconds.")
        incremental: Incremental | None = Field(
            None, description="Fetch only new rows: the query reads the cursor as :cursor."
        )

    Output = FetchSqlOutput

    @classmethod
    def initial_state(cls, params: dict[str, Any]) -> dict[str, Any]:
        return initial_cursor(params)

    def run(self, params: Params, ctx: StepContext) -> FetchSqlOutput:
        import pandas as pd

        binds = dict(params.params)
        cursor = None
        if params.incremental is not None:
            cursor = ctx.state.get("cursor", params.incremental.initial_value)
            if ":cursor" in params.query:
                if "cursor" in binds and binds["cursor"] != cursor:
                    raise StepError(
                        "params.cursor is set by incremental loading; rename your parameter", retryable=False
                    )
                binds["cursor"] = cursor
            elif not any(value == cursor for value in binds.values()):
                raise StepError(
                    "an incremental query must read its cursor: as :cursor (e.g. 'where updated_at > :cursor'), "
                    f'or through a param set to {{"ref": "ctx.{ctx.step_id}.cursor"}}',
                    retryable=False,
                )
        path = resolve_path(params.database, ctx.policy_dir)
        if not path.is_file():
            raise StepError(f"database not found: {path} (params.database {params.database!r})", retryable=False)
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StepError(f"cannot open {path}: {exc}", retryable=False) from exc
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.set_authorizer(_authorize)
            deadline = time.monotonic() + params.timeout_s
            conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, _PROGRESS_EVERY)
            try:
                result = conn.execute(params.query, binds)
                rows = result.fetchmany(params.max_rows + 1)
            except sqlite3.DatabaseError as exc:
                raise StepError(self._explain(exc, params, deadline), retryable=False) from exc
            columns = [d[0] for d in result.description or ()]
        finally:
            conn.close()
        if len(rows) > params.max_rows:
            raise StepError(
                f"the query returned more than max_rows ({params.max_rows}) rows: add a LIMIT or raise max_rows",
                retryable=False,
            )
        raw = json.dumps({"columns": columns, "rows": rows}, default=str, separators=(",", ":")).encode()
        frame = pd.DataFrame.from_records(rows, columns=columns)
        next_cursor = None
        if params.incremental is not None:
            next_cursor = frame_high_water(frame, params.incremental.cursor_field, cursor, " of the result")
            ctx.state.stage("cursor", next_cursor)
        return FetchSqlOutput(
            data=frame,
            content_type="application/vnd.sqlite3",
            url=path.resolve().as_uri(),
            fetched_at=utc_now(),
            content_hash=sha256_hex(raw),
            cursor=cursor,
            next_cursor=next_cursor,
        )

    @staticmethod
    def _explain(exc: sqlite3.DatabaseError, params: Params, deadline: float) -> str:
        text = str(exc)
        if "interrupted" in text and time.monotonic() > deadline:
            return f"the query ran longer than timeout_s ({params.timeout_s:g} s) and was stopped"
        if "not authorized" in text or "prohibited" in text:
            return f"refused: fetch.sql only reads ({text}); writes, ATTACH, PRAGMA and extensions are not allowed"
        if "readonly" in text or "query_only" in text:
            return f"refused: the database is opened read-only ({text})"
        if "You can only execute one statement" in text:
            return "the query must be one statement"
        return f"query failed: {text}"
