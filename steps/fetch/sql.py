"""``fetch.sql``: a read-only query against a SQLite file or a PostgreSQL server, into a DataFrame.

SQLite is read-only three times over: the file is opened with ``mode=ro``, ``PRAGMA query_only``
is on, and a default-deny authorizer allows only reading (SELECT, reads of columns, functions
other than ``load_extension``, recursive CTEs). PostgreSQL (``url``) is read-only by the server:
see :mod:`steps.fetch.sql_postgres`. Values reach the query only as named bind parameters.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine import CheckContext, Problem, Step, StepContext, StepError

from . import hosts, reach, sql_postgres
from .envelope import FetchEnvelope, frame_high_water, initial_cursor, sha256_hex, utc_now
from .sql_rows import collect_rows, stopped_message

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_PROGRESS_EVERY = 10_000  # SQLite VM instructions between checks of the stop flag


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
    """Run a read-only SQL query against a SQLite file or a PostgreSQL database; the rows become a DataFrame.

    Values go in as named bind parameters (``:name`` in the query, ``params`` in the step),
    never by string interpolation. Anything but reading is refused (writes, ATTACH, PRAGMA,
    ``load_extension``). The file must be inside ``[fetch] allowed_paths`` when the engine
    configuration sets it, and never in the engine's state directory. A PostgreSQL ``url``'s
    host must be on the fetch host allow-list; the query runs in a read-only transaction with
    ``statement_timeout``, and never as a superuser. ``max_rows``, ``max_bytes`` and
    ``timeout_s`` bound the query. With ``incremental``, the query reads the cursor of the last
    successful run as ``:cursor`` (or through a param set to ``{"ref": "ctx.<this step>.cursor"}``).
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        database: str | None = Field(
            None, description="SQLite file; relative to the policy file's folder unless absolute."
        )
        url: str | None = Field(
            None, description="A PostgreSQL database instead: postgresql+psycopg://user@host:5432/database."
        )
        password: str | None = Field(None, description='With url: the password, as {"secret": "NAME"}.')
        query: str = Field(description="One SELECT (or WITH ... SELECT) statement, with :name placeholders.")
        params: dict[str, Any] = Field(default_factory=dict, description="Values for the :name placeholders.")
        max_rows: int = Field(100_000, ge=1, description="More rows than this fails the step (add a LIMIT).")
        max_bytes: int = Field(
            100_000_000, ge=1, description="A result whose values add up to more bytes than this fails the step."
        )
        timeout_s: float = Field(30, gt=0, description="The query is interrupted after this many seconds.")
        incremental: Incremental | None = Field(
            None, description="Fetch only new rows: the query reads the cursor as :cursor."
        )

        @model_validator(mode="after")
        def _one_source(self) -> FetchSql.Params:
            if (self.database is None) == (self.url is None):
                raise ValueError("set exactly one of database (a SQLite file) or url (a PostgreSQL server)")
            if self.password is not None and self.url is None:
                raise ValueError("password goes with url: a SQLite file has none")
            return self

    Output = FetchSqlOutput

    @classmethod
    def check(cls, params: dict[str, Any], where: CheckContext) -> list[Problem]:
        problems = reach.check(params, "database", where)
        if "url" in params or "password" in params:
            problems += sql_postgres.check(params, where)
        return problems

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
        # where to read from is checked (and the query text, for PostgreSQL) before the quota counts
        query: _Query | sql_postgres.Query
        if params.database is not None:
            pointer = f"{ctx.pointer}/params/database"
            path = reach.checked(params.database, pointer, ctx.policy_dir, ctx.config, ctx.artifacts.shared_dir)
            if not path.is_file():
                raise StepError(f"database not found: {path} (params.database {params.database!r})", retryable=False)
            query, url, content_type = _Query(path, params, binds), path.resolve().as_uri(), "application/vnd.sqlite3"
        else:
            query = sql_postgres.Query(params, binds, hosts.allowed_patterns(ctx.sections, ctx.config))
            url, content_type = query.server.url, sql_postgres.CONTENT_TYPE
        ctx.use_quota("sql_queries_per_hour")  # [quotas]: counted per actor, refused before the query runs
        columns, rows = query.result()
        raw = json.dumps({"columns": columns, "rows": rows}, default=str, separators=(",", ":")).encode()
        frame = pd.DataFrame.from_records(rows, columns=columns)
        next_cursor = None
        if params.incremental is not None:
            high = frame_high_water(frame, params.incremental.cursor_field, cursor, " of the result")
            next_cursor = _json_cursor(high)
            ctx.state.stage("cursor", next_cursor)
        return FetchSqlOutput(
            data=frame,
            content_type=content_type,
            url=url,
            fetched_at=utc_now(),
            content_hash=sha256_hex(raw),
            cursor=cursor,
            next_cursor=next_cursor,
        )


class _Query:
    """One query in a worker thread that the step stops waiting for at ``timeout_s``.

    SQLite checks an interrupt (and a progress handler) only between VM steps, so a single long
    function call (``instr()`` over 60 MB) cannot be stopped midway. The step does not wait for
    it: at the deadline it interrupts the connection and fails; the worker (a daemon thread)
    stops at the next VM step, closes the connection and its result is dropped.
    """

    def __init__(self, path: Path, params: FetchSql.Params, binds: dict[str, Any]) -> None:
        self.path, self.params, self.binds = path, params, binds
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self.stopped = False  # the step gave up: stop at the next VM step, or before starting
        self.outcome: tuple[list[str], list[Any]] | BaseException | None = None

    def result(self) -> tuple[list[str], list[Any]]:
        params = self.params
        worker = threading.Thread(target=self._work, name=f"fetch.sql {self.path.name}", daemon=True)
        worker.start()
        if not self.done.wait(params.timeout_s):
            with self.lock:
                self.stopped = True
                if self.conn is not None:
                    self.conn.interrupt()
            raise StepError(stopped_message(params.timeout_s), retryable=False)
        if isinstance(self.outcome, sqlite3.DatabaseError):
            raise StepError(_explain(self.outcome), retryable=False) from self.outcome
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        assert self.outcome is not None
        return self.outcome

    def _work(self) -> None:
        try:
            self.outcome = self._fetch()
        except BaseException as exc:  # handed to the waiting step, which raises it
            self.outcome = exc
        finally:
            with self.lock:
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
            self.done.set()

    def _fetch(self) -> tuple[list[str], list[Any]]:
        params = self.params
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StepError(f"cannot open {self.path}: {exc}", retryable=False) from exc
        with self.lock:
            self.conn = conn
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_authorize)
        # an interrupt that came before the connection existed, caught at the next VM step
        conn.set_progress_handler(lambda: 1 if self.stopped else 0, _PROGRESS_EVERY)
        result = conn.execute(params.query, self.binds)
        columns = [d[0] for d in result.description or ()]
        return columns, collect_rows(result.fetchmany, params.max_rows, params.max_bytes)


def _json_cursor(value: Any) -> Any:
    """A high-water mark as JSON, which the state keeps: a time or date (PostgreSQL's timestamptz,
    date) as ISO 8601 text, a numeric as its exact text; PostgreSQL reads either back as bound."""
    if isinstance(value, (dt.date, dt.time)):  # pandas' Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def _explain(exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "not authorized" in text or "prohibited" in text:
        return f"refused: fetch.sql only reads ({text}); writes, ATTACH, PRAGMA and extensions are not allowed"
    if "readonly" in text or "query_only" in text:
        return f"refused: the database is opened read-only ({text})"
    if "You can only execute one statement" in text:
        return "the query must be one statement"
    return f"query failed: {text}"
