"""Durable run state through SQLAlchemy 2 Core: SQLite by default, any SQLAlchemy URL later.

Tables: ``runs``, ``step_runs`` (one row per step per run), ``step_attempts`` (every attempt),
``pipeline_state``, ``schedule_slots`` (the slots schedulers claimed), ``run_resumes`` (each
``engine resume`` of a run) and ``schema_migrations``.
Every write is its own committed transaction, so the database
always shows the last state the runner reached.

Migrations are a short list of versioned, idempotent functions recorded in
``schema_migrations`` rather than Alembic: the engine creates its own tables on first use,
with no migration scripts for users to run, and the list is tiny. The functions use only
dialect-neutral SQLAlchemy constructs, so ``ENGINE_DB_URL=postgresql://...`` works unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .artifacts import ArtifactStore
from .clock import utc_now
from .errors import ResumeError
from .leases import Leases, LeaseSettings, pid_alive, unchanged

__all__ = ["Store", "pid_alive", "serialize", "portable_strings"]

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("policy_id", sa.String(200), nullable=False, index=True),
    sa.Column("policy_hash", sa.String(64), nullable=False),
    sa.Column("policy_json", sa.Text, nullable=False),
    sa.Column("policy_path", sa.Text),
    sa.Column("params_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("trigger", sa.String(16), nullable=False, default="manual"),
    sa.Column("attempt", sa.Integer, nullable=False, default=1),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("error", sa.Text),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("preview_dir", sa.Text),
    sa.Column("scheduled_for", sa.String(40)),
    sa.Column("actor", sa.String(200)),  # who started the run (migration 5)
    # the lease of a RUNNING run (migration 9): the process executing it, and until when it
    # need not be believed dead (engine.leases)
    sa.Column("owner", sa.String(255)),
    sa.Column("expires_at", sa.String(40)),
)

step_runs = sa.Table(
    "step_runs",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("step_id", sa.String(200), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("phase", sa.String(16), nullable=False, default="main"),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("side_effects", sa.Boolean, nullable=False, default=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("started_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("duration_s", sa.Float),
    sa.Column("output_json", sa.Text),
    sa.Column("output_hash", sa.String(64)),
    sa.Column("definition_hash", sa.String(64), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("skip_reason", sa.Text),
    sa.Column("run_attempt", sa.Integer, nullable=False, default=1),
    # values the step staged with ctx.state.stage(): committed to pipeline_state only when the
    # run ends SUCCESS (JSON object, or NULL)
    sa.Column("pending_state", sa.Text),
)

step_attempts = sa.Table(
    "step_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("step_id", sa.String(200), nullable=False),
    sa.Column("run_attempt", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("error", sa.Text),
)

pipeline_state = sa.Table(
    "pipeline_state",
    metadata,
    sa.Column("policy_id", sa.String(200), primary_key=True),
    sa.Column("step_id", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value_json", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

# one row per schedule slot a scheduler claimed: the unique (policy_id, scheduled_for) key is
# what makes a slot run at most once, across restarts and across processes
schedule_slots = sa.Table(
    "schedule_slots",
    metadata,
    sa.Column("policy_id", sa.String(200), primary_key=True),
    sa.Column("scheduled_for", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # CLAIMED, then the run's end state or SKIPPED
    sa.Column("reason", sa.Text),  # SKIPPED: 'overlap' or 'missed'; or what happened to an interrupted run
    sa.Column("run_id", sa.String(64)),
    sa.Column("claimed_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(255)),
    # the lease of a CLAIMED slot (migration 9), as for runs
    sa.Column("owner", sa.String(255)),
    sa.Column("expires_at", sa.String(40)),
)

run_resumes = sa.Table(
    # one row per `engine resume` of a run: what it ran with and what it was told to run again
    "run_resumes",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("resumed_at", sa.String(40), nullable=False),
    sa.Column("policy_source", sa.Text, nullable=False),  # "recorded", or the --policy file's path
    sa.Column("policy_hash", sa.String(64), nullable=False),
    sa.Column("changed_json", sa.Text, nullable=False),  # steps whose definition changed
    sa.Column("rerun_json", sa.Text, nullable=False),  # steps named with --rerun
    sa.Column("kept_json", sa.Text, nullable=False),  # steps whose earlier result was kept
)

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(40), nullable=False),
)


def portable_strings(tables: sa.MetaData) -> sa.MetaData:
    """Let the string columns of ``tables`` hold what SQLite holds, on PostgreSQL too.

    SQLite never enforces a ``VARCHAR(n)`` length; PostgreSQL does, so a long policy id, state key
    or Content-Type that works on SQLite would fail there alone. On PostgreSQL these columns are
    ``VARCHAR`` without a length (the same storage and speed); on SQLite nothing changes. Applied
    to the engine's tables and to every plugin's (:meth:`Store.database`); idempotent."""
    if not tables.info.get("portable_strings"):
        for table in tables.tables.values():
            for column in table.columns:
                if type(column.type) is sa.String and column.type.length is not None:
                    column.type = column.type.with_variant(sa.String(), "postgresql")
        tables.info["portable_strings"] = True
    return tables


portable_strings(metadata)

_UPDATE_RUN = runs.update().where(runs.c.id == sa.bindparam("_run_id"))
_UPDATE_STEP = step_runs.update().where(
    step_runs.c.run_id == sa.bindparam("_run_id"), step_runs.c.step_id == sa.bindparam("_step_id")
)
_INSERT_ATTEMPT = step_attempts.insert()

STEP_STATE_COLUMNS = (
    "status",
    "attempts",
    "run_attempt",
    "started_at",
    "finished_at",
    "duration_s",
    "error",
    "skip_reason",
    "output_json",
    "output_hash",
    "pending_state",
)
ATTEMPT_COLUMNS = ("run_attempt", "attempt", "status", "started_at", "finished_at", "error")


class _Prepared:
    """A statement compiled once by SQLAlchemy for the engine's dialect, run on a raw DBAPI cursor.

    The runner writes a step's state twice per step; this path skips SQLAlchemy's per-execution
    work (about 0.1 ms a statement) while the SQL still comes from SQLAlchemy. ``params`` turns
    a dict holding every bind parameter (no defaults, no type processing: strings and numbers
    only) into what the driver takes: a tuple in the statement's order for positional drivers
    (SQLite), the dict itself otherwise.
    """

    def __init__(self, statement: Any, dialect: Any, column_keys: Sequence[str] = ()) -> None:
        # with column_keys, the SET or VALUES parameters are named after their columns
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys))
        self.sql = compiled.string
        self.params: Callable[[dict[str, Any]], Any] = _same
        if compiled.positional:
            names = compiled.positiontup
            pick = operator.itemgetter(*names)
            self.params = pick if len(names) > 1 else lambda values: (pick(values),)


def _same(values: dict[str, Any]) -> dict[str, Any]:
    return values


# a step_runs row with every column: SQLAlchemy's client-side defaults, else NULL (prepared inserts
# bypass SQLAlchemy, which would fill them in)
_STEP_ROW = {
    c.name: c.default.arg if c.default is not None and c.default.is_scalar else None for c in step_runs.columns
}


_SET_STATE = step_runs.update().where(
    step_runs.c.run_id == sa.bindparam("w_run_id"), step_runs.c.step_id == sa.bindparam("w_step_id")
)
_STEP_STATES = sa.select(step_runs.c.step_id, *[step_runs.c[name] for name in STEP_STATE_COLUMNS]).where(
    step_runs.c.run_id == sa.bindparam("run_id")
)


def _v1_create_tables(conn: Connection) -> None:
    metadata.create_all(conn, tables=[runs, step_runs, step_attempts], checkfirst=True)


def _v2_pipeline_state(conn: Connection) -> None:
    columns = {c["name"] for c in sa.inspect(conn).get_columns("step_runs")}
    if "pending_state" not in columns:  # a database made by version 1
        conn.execute(sa.text("ALTER TABLE step_runs ADD COLUMN pending_state TEXT"))
    pipeline_state.create(conn, checkfirst=True)


def _v3_schedule_slots(conn: Connection) -> None:
    schedule_slots.create(conn, checkfirst=True)


def _v4_run_resumes(conn: Connection) -> None:
    run_resumes.create(conn, checkfirst=True)


def _v5_governance(conn: Connection) -> None:
    """Policy versions, approvals, the audit chain (append-only triggers), quota usage, runs.actor."""
    from .governance import tables

    tables.create(conn)


def _v6_api_tokens(conn: Connection) -> None:
    """API tokens of the server: name, role, workspace, the token's SHA-256 (never the token)."""
    from .governance import tables

    tables.api_tokens.create(conn, checkfirst=True)


def _v7_policy_archive(conn: Connection) -> None:
    """Archived policies (``DELETE /policies/{id}``): hidden from lists and schedules, history kept;
    the current version of a policy when an earlier content was recorded again (policy_heads)."""
    from .governance import tables

    tables.policy_archive.create(conn, checkfirst=True)
    tables.policy_heads.create(conn, checkfirst=True)
    # newest-first listing with a cursor (the server's GET /runs) reads this index, not the table
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_runs_started_id ON runs (started_at, id)"))
    # ... and filtered by policy or status, and the last run of each policy (GET /policies)
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_runs_policy_started ON runs (policy_id, started_at, id)"))
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_runs_status_started ON runs (status, started_at, id)"))


def _v8_approval_requests(conn: Connection) -> None:
    """Requests for approval of a policy version (MCP's request_approval)."""
    from .governance import tables

    tables.approval_requests.create(conn, checkfirst=True)


def _v9_leases(conn: Connection) -> None:
    """Leases instead of pids (engine.leases): ``owner`` and ``expires_at`` on runs and slots.

    What is RUNNING or CLAIMED now gets a lease in the name of the pid that holds it, expiring a
    lease's length from now: a live process renews it once it runs this version, a dead one's
    expires (on its own host, a dead pid is seen at once)."""
    settings = LeaseSettings.from_env()
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.lease_s)).isoformat(timespec="microseconds")
    _add_missing_columns(conn, [runs, schedule_slots])
    for table, active in ((runs, "RUNNING"), (schedule_slots, "CLAIMED")):
        rows = conn.execute(sa.select(table).where(table.c.status == active, table.c.owner.is_(None))).mappings()
        for row in list(rows):
            key = [table.c[c.name] == row[c.name] for c in table.primary_key.columns]
            owner = f"{row['host']}:{row['pid']}" if row["host"] and row["pid"] is not None else None
            conn.execute(table.update().where(*key).values(owner=owner, expires_at=until))


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _v1_create_tables),
    (2, _v2_pipeline_state),
    (3, _v3_schedule_slots),
    (4, _v4_run_resumes),
    (5, _v5_governance),
    (6, _v6_api_tokens),
    (7, _v7_policy_archive),
    (8, _v8_approval_requests),
    (9, _v9_leases),
]


INTERRUPTED = "interrupted: the engine process stopped"


def now() -> str:
    """Now, UTC, ISO 8601 with microseconds: ``2026-11-23T19:29:13.091205+00:00``."""
    return utc_now()


def serialize(conn: Connection, name: str) -> None:
    """Make the transactions that call this with the same ``name`` run one after another, from here
    to their end, so that what one checks before writing (no other claim of the policy is active, the
    head of the audit chain, a quota's count) cannot change under it.

    On SQLite the database's write lock does it already: a transaction that wrote holds it until it
    ends, and the callers write first. On PostgreSQL, rows are locked one at a time and a transaction
    does not see the rows another has not committed, so this takes a transaction-level advisory
    lock on the name (within the connection's schema, i.e. per workspace)."""
    if conn.dialect.name == "postgresql":
        key = "hashtext(coalesce(current_schema(), '') || ':' || :name)"
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({key})"), {"name": name})


class Store:
    """The run-state database plus the state directory (artifacts, previews, logs)."""

    def __init__(self, state_dir: Path, db_url: str | None = None, artifacts_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        # the artifacts folder: ``artifacts_dir``, else ENGINE_ARTIFACTS_DIR (a folder every host
        # reaches, when several share the database), else <state dir>/artifacts
        from_env = os.environ.get("ENGINE_ARTIFACTS_DIR")
        shared = artifacts_dir or (Path(from_env) if from_env else None)
        self.artifacts_dir = shared or state_dir / "artifacts"
        self._artifacts_shared = shared is not None
        url = db_url or f"sqlite:///{state_dir / 'engine.db'}"
        self.engine: Engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        elif "search_path" in str(self.engine.url.query.get("options", "")):
            _create_schema(self.engine.url)  # a workspace's schema (engine.workspaces.db_url_for)
        self.migrate()
        # this process's leases on runs and slots, renewed by a heartbeat thread (engine.leases)
        self.leases = Leases(self.engine)
        self.leases.hold(runs, runs.c.status == "RUNNING")
        self.leases.hold(schedule_slots, schedule_slots.c.status == "CLAIMED")
        self.leases.on_error = _log_lease_error
        self._fenced: set[str] = set()  # runs whose lease another process took: their writes are dropped
        self._writer: Connection | None = None
        self._raw: Any = None
        self._plugin_tables: set[int] = set()
        # the runner's statements, compiled once: the attempt insert, and an update per set of
        # columns a transition changes (a handful: RUNNING, SUCCESS, FAILED, SKIPPED...)
        self._insert_step = _Prepared(step_runs.insert(), self.engine.dialect, tuple(_STEP_ROW))
        self._step_states = _Prepared(_STEP_STATES, self.engine.dialect)
        self._add_attempt = _Prepared(
            step_attempts.insert(), self.engine.dialect, ("run_id", "step_id", *ATTEMPT_COLUMNS)
        )
        self._set_state: dict[tuple[str, ...], _Prepared] = {}
        # called after each committed change of a run or a step: (run_id, step_id or None, changed
        # values); the server's live events listen here (an empty list costs the hot path nothing)
        self.listeners: list[Callable[[str, str | None, dict[str, Any]], None]] = []

    def _notify(self, run_id: str, step_id: str | None, values: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(run_id, step_id, values)
            except Exception:  # a listener never breaks a run
                pass

    def _write(self) -> Any:
        """A transaction on the one long-lived writing connection (checked out once: the hot path)."""
        if self._writer is None or self._writer.closed:
            self._writer = self.engine.connect()
        return self._writer.begin()

    def artifacts(self) -> ArtifactStore:
        """The content-addressed artifact store (with the delivery journal beside it)."""
        shared = self.artifacts_dir if self._artifacts_shared else self.state_dir
        return ArtifactStore(self.artifacts_dir, shared_dir=shared)

    @classmethod
    def open(cls, state_dir: str | Path | None = None) -> Store:
        directory = Path(state_dir or os.environ.get("ENGINE_STATE_DIR") or ".engine")
        return cls(directory, os.environ.get("ENGINE_DB_URL") or None)

    def close(self) -> None:
        self.leases.stop()
        if self._raw is not None:
            self._raw_fairy.close()
            self._raw = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """Apply missing migrations. Processes starting at once on a new state directory race
        to create the tables; the loser sees them on its next try. (On PostgreSQL they take
        turns: :func:`serialize`.)"""
        for attempt in range(6):
            try:
                self._migrate_once()
                return
            except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError) as exc:
                if attempt == 5 or not _lost_race(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _migrate_once(self) -> None:
        with self.engine.begin() as conn:
            serialize(conn, "migrations")
            schema_migrations.create(conn, checkfirst=True)
            done = {row[0] for row in conn.execute(sa.select(schema_migrations.c.version))}
            for version, apply in MIGRATIONS:
                if version not in done:
                    apply(conn)
                    conn.execute(schema_migrations.insert().values(version=version, applied_at=now()))

    def database(self, metadata: sa.MetaData) -> Engine:
        """The database engine, with a plugin's tables created (once per store) if missing, and the
        columns a newer version of the plugin added to a table that exists (they must be nullable)."""
        if id(metadata) not in self._plugin_tables:
            portable_strings(metadata)
            for attempt in range(6):  # two processes (or threads) may create the same tables at once
                try:
                    with self.engine.begin() as conn:
                        serialize(conn, "migrations")
                        metadata.create_all(conn, checkfirst=True)
                        _add_missing_columns(conn, metadata.sorted_tables)
                    break
                except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError) as exc:
                    if attempt == 5 or not _lost_race(exc):
                        raise
                    time.sleep(0.05 * (attempt + 1))
            self._plugin_tables.add(id(metadata))
        return self.engine

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar_one() or 0

    # -- writes ---------------------------------------------------------------------------

    def create_run(self, run: dict[str, Any], steps: Iterable[dict[str, Any]]) -> None:
        """Record a new run and its step rows, in one transaction."""
        insert = self._insert_step  # a prepared executemany: through SQLAlchemy, 1,000 rows take 12 ms, here 2
        rows = [insert.params({**_STEP_ROW, "run_id": run["id"], **step}) for step in steps]
        with self.engine.begin() as conn:
            conn.execute(runs.insert().values(**self.leases.take(), **run))
            if rows:
                conn.exec_driver_sql(insert.sql, rows)

    # The hot path (a few writes per step) uses statements built once, with the SET clause
    # taken from the parameters: building a statement per call costs more than the commit.

    def fence(self, run_id: str) -> None:
        """Drop this process's later writes to ``run_id``: another process took its lease over (this
        one could not renew it in time) and now owns the run's rows."""
        self._fenced.add(run_id)
        self.leases.unwatch(run_id)

    def update_run(self, run_id: str, **values: Any) -> None:
        if run_id in self._fenced:
            return
        with self._write() as tx:
            tx.connection.execute(_UPDATE_RUN, {"_run_id": run_id, **values})
        if self.listeners:
            self._notify(run_id, None, values)

    def update_step(self, run_id: str, step_id: str, attempt_row: dict[str, Any] | None = None, **values: Any) -> None:
        """Change a step's row; with ``attempt_row``, also record a finished attempt (one transaction)."""
        if run_id in self._fenced:
            return
        with self._write() as tx:
            if attempt_row is not None:
                tx.connection.execute(_INSERT_ATTEMPT, {"run_id": run_id, "step_id": step_id, **attempt_row})
            if values:
                tx.connection.execute(_UPDATE_STEP, {"_run_id": run_id, "_step_id": step_id, **values})
        if self.listeners and values:
            self._notify(run_id, step_id, values)

    def finish_run(self, run_id: str, commit_state: bool, **values: Any) -> None:
        """End a run; with ``commit_state``, move every step's staged values into pipeline_state
        in the same transaction (so the run's SUCCESS and its new state land together)."""
        if run_id in self._fenced:
            return
        with self._write() as tx:
            conn = tx.connection
            if commit_state:
                row = conn.execute(sa.select(runs.c.policy_id).where(runs.c.id == run_id)).one()
                staged = conn.execute(
                    sa.select(step_runs.c.step_id, step_runs.c.pending_state).where(
                        step_runs.c.run_id == run_id, step_runs.c.pending_state.is_not(None)
                    )
                ).all()
                stamp = now()
                for step_id, text in staged:
                    for key, value in json.loads(text).items():
                        where = (
                            (pipeline_state.c.policy_id == row.policy_id)
                            & (pipeline_state.c.step_id == step_id)
                            & (pipeline_state.c.key == key)
                        )
                        conn.execute(pipeline_state.delete().where(where))
                        conn.execute(
                            pipeline_state.insert().values(
                                policy_id=row.policy_id,
                                step_id=step_id,
                                key=key,
                                value_json=json.dumps(value),
                                run_id=run_id,
                                updated_at=stamp,
                            )
                        )
            conn.execute(_UPDATE_RUN, {"_run_id": run_id, **values})
        if self.listeners:
            self._notify(run_id, None, values)

    def get_pipeline_state(self, policy_id: str, step_id: str) -> dict[str, Any]:
        """The committed values of one step of one policy (what ``ctx.state.get`` reads)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pipeline_state.c.key, pipeline_state.c.value_json).where(
                    pipeline_state.c.policy_id == policy_id, pipeline_state.c.step_id == step_id
                )
            ).all()
        return {key: json.loads(text) for key, text in rows}

    def checkpoint(self) -> None:
        """Fold the SQLite WAL back into the database file and truncate it (after a run)."""
        if self.engine.dialect.name != "sqlite":
            return
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except sa.exc.OperationalError:
            pass  # another process is busy with the database: its own checkpoint will do it

    def _driver(self) -> Any:
        """The runner's connection: the DBAPI connection itself (no proxy per call), checked out
        of the pool for the store's life."""
        if self._raw is None:
            self._raw_fairy = self.engine.raw_connection()
            self._raw = self._raw_fairy.driver_connection
        return self._raw

    def step_states(self, run_id: str) -> dict[str, tuple[Any, ...]]:
        """The values of STEP_STATE_COLUMNS (in that order) of every step row of a run, by step id:
        what a runner starts from."""
        connection = self._driver()
        cursor = connection.cursor()
        try:
            cursor.execute(self._step_states.sql, self._step_states.params({"run_id": run_id}))
            rows = cursor.fetchall()
        finally:
            cursor.close()
            # psycopg began a transaction for the read: end it, or the connection would sit "idle in
            # transaction" until the first write (sqlite3 began none: a no-op)
            connection.rollback()
        return {row[0]: row[1:] for row in rows}

    def set_step_state(
        self, run_id: str, step_id: str, changes: dict[str, Any], attempt: dict[str, Any] | None = None
    ) -> None:
        """Write the columns of a step's row that changed (STEP_STATE_COLUMNS keys) and a finished
        attempt (every ATTEMPT_COLUMNS key), in one commit.

        Only what changed is written: an UPDATE of eleven columns costs the commit about 10 us more
        than one of the two or six a transition usually changes."""
        if run_id in self._fenced:
            return
        update = self._set_state.get(tuple(changes))
        if update is None:
            if not changes.keys() <= set(STEP_STATE_COLUMNS):
                raise ValueError(f"not step state columns: {sorted(changes.keys() - set(STEP_STATE_COLUMNS))}")
            update = self._set_state[tuple(changes)] = _Prepared(_SET_STATE, self.engine.dialect, tuple(changes))
        connection = self._driver()
        cursor = connection.cursor()
        try:
            if attempt is not None:
                cursor.execute(
                    self._add_attempt.sql, self._add_attempt.params({"run_id": run_id, "step_id": step_id, **attempt})
                )
            cursor.execute(update.sql, update.params({**changes, "w_run_id": run_id, "w_step_id": step_id}))
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            cursor.close()
        if self.listeners:
            self._notify(run_id, step_id, changes)

    def claim_resume(
        self,
        run_id: str,
        attempt: int,
        resets: dict[str, dict[str, Any]],
        run_values: dict[str, Any],
        inserts: list[dict[str, Any]] = [],  # noqa: B006 - never mutated
        deletes: list[str] = [],  # noqa: B006
        positions: dict[str, int] = {},  # noqa: B006
        resume: dict[str, Any] | None = None,
    ) -> None:
        """Move a run back to RUNNING and reset the steps that will run again, atomically.

        ``inserts``/``deletes`` add and drop step rows when a resume uses an edited policy;
        ``positions`` renumbers the rows to the new policy order; ``resume`` is the
        ``run_resumes`` row that records this resume.
        """
        with self.engine.begin() as conn:
            if resume is not None:
                conn.execute(run_resumes.insert().values(run_id=run_id, attempt=attempt, resumed_at=now(), **resume))
            if deletes:
                conn.execute(step_runs.delete().where(step_runs.c.run_id == run_id, step_runs.c.step_id.in_(deletes)))
            if inserts:
                conn.execute(step_runs.insert(), [{"run_id": run_id, **r} for r in inserts])
            for step_id, position in positions.items():
                conn.execute(
                    step_runs.update()
                    .where(step_runs.c.run_id == run_id, step_runs.c.step_id == step_id)
                    .values(position=position)
                )
            claimed = conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.status != "RUNNING")
                .values(status="RUNNING", attempt=attempt, finished_at=None, error=None, **self.leases.take())
                .values(**run_values)
            )
            if claimed.rowcount != 1:  # another process resumed it first
                raise ResumeError(f"run {run_id} is already running again (resumed by another process)")
            for step_id, values in resets.items():
                conn.execute(
                    step_runs.update()
                    .where(step_runs.c.run_id == run_id, step_runs.c.step_id == step_id)
                    .values(**values)
                )

    def mark_interrupted(self) -> list[str]:
        """Runs left RUNNING by a process whose lease is over (its time passed, or its process on
        this host is gone) become FAILED, "interrupted"; returns their ids."""
        columns = (runs.c.id, runs.c.pid, runs.c.host, runs.c.owner, runs.c.expires_at)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*columns).where(runs.c.status == "RUNNING")).all()
        dead = []
        for r in rows:
            if not self.leases.expired(r):
                continue
            with self.engine.begin() as conn:
                stamp = now()
                ended = conn.execute(  # only if nobody renewed, resumed or ended it since we looked
                    runs.update()
                    .where(
                        runs.c.id == r.id,
                        runs.c.status == "RUNNING",
                        unchanged(runs.c.owner, r.owner),
                        unchanged(runs.c.expires_at, r.expires_at),
                    )
                    .values(status="FAILED", error=INTERRUPTED, finished_at=stamp)
                )
                if ended.rowcount != 1:
                    continue
                conn.execute(
                    step_runs.update()
                    .where(step_runs.c.run_id == r.id, step_runs.c.status == "RUNNING")
                    .values(
                        status="FAILED",
                        error=INTERRUPTED,
                        finished_at=stamp,
                        attempts=step_runs.c.attempts + 1,  # the attempt that was under way
                    )
                )
            dead.append(r.id)
        return dead

    # -- schedule slots -------------------------------------------------------------------

    def claim_slot(self, policy_id: str, scheduled_for: str, run_id: str) -> str | None:
        """Claim a slot in one transaction, before its run starts.

        Returns ``"run"`` (the caller runs it as ``run_id``), ``"overlap"`` (claimed but recorded
        ``SKIPPED: overlap`` because another run of the policy is active) or None (another
        process claimed the slot first). The insert comes first, so the write lock is held
        while the active runs are looked at: two processes cannot both see "none active" (on
        PostgreSQL, :func:`serialize` on the policy's slots does the same).
        """
        stamp = now()
        try:
            with self.engine.begin() as conn:
                serialize(conn, f"slots:{policy_id}")
                lease = self.leases.take()
                conn.execute(_slot_insert(policy_id, scheduled_for, stamp, status="CLAIMED", run_id=run_id, **lease))
                if self._active_elsewhere(conn, policy_id, scheduled_for):
                    conn.execute(
                        schedule_slots.update()
                        .where(schedule_slots.c.policy_id == policy_id, schedule_slots.c.scheduled_for == scheduled_for)
                        .values(status="SKIPPED", reason="overlap", run_id=None, finished_at=stamp)
                    )
                    return "overlap"
        except sa.exc.IntegrityError:
            return None
        return "run"

    def _active_elsewhere(self, conn: Connection, policy_id: str, scheduled_for: str) -> bool:
        """Whether another claim or run of the policy is under way (its lease holds)."""
        lease = (schedule_slots.c.owner, schedule_slots.c.expires_at, schedule_slots.c.pid, schedule_slots.c.host)
        claims = conn.execute(
            sa.select(*lease).where(
                schedule_slots.c.policy_id == policy_id,
                schedule_slots.c.status == "CLAIMED",
                schedule_slots.c.scheduled_for != scheduled_for,
            )
        ).all()
        running = conn.execute(
            sa.select(runs.c.owner, runs.c.expires_at, runs.c.pid, runs.c.host).where(
                runs.c.policy_id == policy_id, runs.c.status == "RUNNING"
            )
        ).all()
        return any(not self.leases.expired(r) for r in [*claims, *running])

    def record_slot(self, policy_id: str, scheduled_for: str, status: str, reason: str | None = None) -> bool:
        """Record a slot that is not run (``SKIPPED: missed``); False if it was already recorded."""
        stamp = now()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    _slot_insert(
                        policy_id,
                        scheduled_for,
                        stamp,
                        status=status,
                        reason=reason,
                        finished_at=stamp,
                        pid=self.leases.pid,
                        host=self.leases.host,
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def finish_slot(self, policy_id: str, scheduled_for: str, status: str, reason: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schedule_slots.update()
                .where(schedule_slots.c.policy_id == policy_id, schedule_slots.c.scheduled_for == scheduled_for)
                .values(status=status, reason=reason, finished_at=now())
            )

    def slot_lease_expired(self, claim: dict[str, Any]) -> bool:
        """Whether the process that claimed this slot lost it (lease over, or its pid gone here)."""
        return self.leases.expired(claim)

    def take_over_slot(self, claim: dict[str, Any]) -> bool:
        """Make a claim whose lease is over this process's; False if another process did first
        (or its owner renewed it since ``claim`` was read)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                schedule_slots.update()
                .where(
                    schedule_slots.c.policy_id == claim["policy_id"],
                    schedule_slots.c.scheduled_for == claim["scheduled_for"],
                    schedule_slots.c.status == "CLAIMED",
                    unchanged(schedule_slots.c.owner, claim.get("owner")),
                    unchanged(schedule_slots.c.expires_at, claim.get("expires_at")),
                )
                .values(**self.leases.take())
            )
            return bool(result.rowcount == 1)

    def release_slot(self, policy_id: str, scheduled_for: str) -> None:
        """Forget a claim whose run never started (so the slot can be claimed again)."""
        with self.engine.begin() as conn:
            conn.execute(
                schedule_slots.delete().where(
                    schedule_slots.c.policy_id == policy_id,
                    schedule_slots.c.scheduled_for == scheduled_for,
                    schedule_slots.c.status == "CLAIMED",
                )
            )

    def last_slot(self, policy_id: str) -> str | None:
        """The newest slot recorded for a policy, whatever became of it."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.max(schedule_slots.c.scheduled_for)).where(schedule_slots.c.policy_id == policy_id)
            ).scalar_one()

    def list_slots(self, policy_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Slot records, oldest first."""
        query = sa.select(schedule_slots).order_by(schedule_slots.c.policy_id, schedule_slots.c.scheduled_for)
        if policy_id is not None:
            query = query.where(schedule_slots.c.policy_id == policy_id)
        if status is not None:
            query = query.where(schedule_slots.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def delete_runs(self, run_ids: list[str]) -> None:
        """Delete runs with their step and attempt records (one transaction)."""
        if not run_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(step_attempts.delete().where(step_attempts.c.run_id.in_(run_ids)))
            conn.execute(run_resumes.delete().where(run_resumes.c.run_id.in_(run_ids)))
            conn.execute(step_runs.delete().where(step_runs.c.run_id.in_(run_ids)))
            conn.execute(runs.delete().where(runs.c.id.in_(run_ids), runs.c.status != "RUNNING"))

    def output_texts(self, run_ids: list[str] | None = None, exclude: list[str] | None = None) -> list[str]:
        """The stored outputs of some runs' steps (or of every run but ``exclude``)."""
        query = sa.select(step_runs.c.output_json).where(step_runs.c.output_json.is_not(None))
        if run_ids is not None:
            query = query.where(step_runs.c.run_id.in_(run_ids))
        if exclude:
            query = query.where(step_runs.c.run_id.not_in(exclude))
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    # -- reads ----------------------------------------------------------------------------

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().first()
        return dict(row) if row else None

    def find_runs(self, prefix: str) -> list[str]:
        """Up to 5 run ids starting with ``prefix``: case-insensitive on every database (SQLite's LIKE
        is, PostgreSQL's is not), and ``%``/``_`` in it are plain characters."""
        query = sa.select(runs.c.id).where(runs.c.id.istartswith(prefix, autoescape=True)).limit(5)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def get_resumes(self, run_id: str) -> list[dict[str, Any]]:
        """The run's resumes, oldest first (``run_resumes`` rows)."""
        with self.engine.connect() as conn:
            query = sa.select(run_resumes).where(run_resumes.c.run_id == run_id).order_by(run_resumes.c.attempt)
            return [dict(r) for r in conn.execute(query).mappings()]

    def get_steps(self, run_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(step_runs).where(step_runs.c.run_id == run_id).order_by(step_runs.c.position))
            keys = list(rows.keys())  # zipped: a third faster than dict(RowMapping) for a 1,000-step run
            return [dict(zip(keys, row, strict=True)) for row in rows]

    def list_runs(
        self,
        policy_id: str | None = None,
        status: str | None = None,
        limit: int | None = 20,
        trigger: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: tuple[str, str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first; ``since``/``until`` bound ``started_at`` (ISO 8601 UTC, inclusive/exclusive).

        ``before`` is a ``(started_at, id)`` cursor: only runs after it in this order (the next
        page); ``columns`` limits the columns read (the default is every one)."""
        selected = [runs.c[name] for name in columns] if columns else [runs]
        query = sa.select(*selected).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(
                sa.or_(
                    runs.c.started_at < before[0],
                    sa.and_(runs.c.started_at == before[0], runs.c.id < before[1]),
                )
            )
        if policy_id:
            query = query.where(runs.c.policy_id == policy_id)
        if status:
            query = query.where(runs.c.status == status.upper())
        if trigger == "resume":  # runs that were resumed keep their trigger; "resume" finds them
            query = query.where(runs.c.attempt > 1)
        elif trigger:
            query = query.where(runs.c.trigger == trigger)
        if since:
            query = query.where(runs.c.started_at >= since)
        if until:
            query = query.where(runs.c.started_at < until)
        with self.engine.connect() as conn:
            rows = conn.execute(query)
            keys = list(rows.keys())  # zipped: twice as fast as dict(RowMapping) for a page of 50
            return [dict(zip(keys, row, strict=True)) for row in rows]


def _slot_insert(policy_id: str, scheduled_for: str, stamp: str, **values: Any) -> Any:
    """The row that claims (or records) one schedule slot."""
    return schedule_slots.insert().values(policy_id=policy_id, scheduled_for=scheduled_for, claimed_at=stamp, **values)


def _add_missing_columns(conn: Connection, tables: Iterable[sa.Table]) -> None:
    """Add to existing tables the nullable columns their definition gained since they were made."""
    inspector = sa.inspect(conn)
    for table in tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable and not column.primary_key:
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def _log_lease_error(event: str, exc: Exception) -> None:
    from .logs import get_logger

    get_logger().warning(event, error=f"{type(exc).__name__}: {exc}", action="trying again at the next heartbeat")


# PostgreSQL's "already exists" (duplicate_table, duplicate_object, duplicate_schema): another
# process created the same thing between our check and our CREATE
_DUPLICATE = {"42P07", "42710", "42P06"}


def _lost_race(exc: sa.exc.DBAPIError) -> bool:
    """Whether creating tables failed because another process was doing the same (try again)."""
    if isinstance(exc, sa.exc.ProgrammingError):
        return getattr(exc.orig, "sqlstate", None) in _DUPLICATE
    return True


def _create_schema(url: sa.URL) -> None:
    """Create the first schema of the connections' ``search_path`` if it does not exist (before
    the store's engine connects: SQLAlchemy reads the default schema once, on its first
    connection). Two processes may create it at once: the loser finds it there."""
    probe = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with probe.begin() as conn:
            if conn.execute(sa.text("SELECT current_schema()")).scalar() is not None:
                return
            first = str(conn.execute(sa.text("SHOW search_path")).scalar()).split(",")[0].strip()
            if first and first != '"$user"':  # an identifier as PostgreSQL parsed it, quoted when it must be
                conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {first}"))
    except sa.exc.IntegrityError:
        pass
    finally:
        probe.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # checkpoint (with its fsyncs) every ~40 MB of WAL instead of every 4 MB: fewer stalls in a
    # run's hot path; Store.checkpoint() folds the WAL back when a run finishes
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
