"""engine.store: run state in SQLite through SQLAlchemy Core (issue #3 §7), and the same on
PostgreSQL (issue #18): the tests that take ``store`` run on both (tests/conftest.py)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine import store as store_module
from engine.store import Store
from tests.conftest import policy


def sql(db: Path | Store, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``query`` read through a connection of its own: sqlite3 on a database file, or a
    new SQLAlchemy engine on a store's database (whichever it is)."""
    if isinstance(db, Path):
        with closing(sqlite3.connect(db)) as conn:
            return conn.execute(query, args).fetchall()
    other = sa.create_engine(db.engine.url)
    try:
        with other.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(query, args)]
    finally:
        other.dispose()


def columns(store: Store, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(store.engine).get_columns(table)}


def test_state_dir_holds_the_database(store, state_dir, database):
    # on PostgreSQL the state directory holds the artifacts, previews and logs alone
    assert (state_dir / "engine.db").is_file() == (database == "sqlite")
    assert store.state_dir == state_dir


def test_tables_have_the_columns_the_issue_lists(store):
    db = store
    assert set(sa.inspect(store.engine).get_table_names()) >= {
        "runs",
        "step_runs",
        "step_attempts",
        "schema_migrations",
    }
    assert columns(db, "runs") >= {
        "id",
        "policy_id",
        "policy_hash",
        "policy_json",
        "params_json",
        "status",
        "dry_run",
        "trigger",
        "attempt",
        "started_at",
        "finished_at",
        "error",
    }
    assert columns(db, "step_runs") >= {
        "run_id",
        "step_id",
        "status",
        "attempts",
        "started_at",
        "finished_at",
        "duration_s",
        "output_json",
        "output_hash",
        "definition_hash",
        "error",
        "skip_reason",
    }
    assert columns(db, "step_attempts") >= {
        "run_id",
        "step_id",
        "run_attempt",
        "attempt",
        "status",
        "started_at",
        "finished_at",
        "error",
    }


@pytest.mark.sqlite_only("SQLite's pragmas")
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(store, state_dir):
    assert sql(state_dir / "engine.db", "PRAGMA journal_mode") == [("wal",)]
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migrations_are_versioned_and_idempotent(state_dir, db_url):
    first = Store(state_dir, db_url)
    first.migrate()
    first.close()
    second = Store(state_dir, db_url)
    try:
        assert second.schema_version() == max(v for v, _ in store_module.MIGRATIONS)
        rows = sql(second, "SELECT version FROM schema_migrations ORDER BY version")
    finally:
        second.close()
    assert rows == [(v,) for v, _ in store_module.MIGRATIONS]


_MIGRATE = """
import sys, time
from pathlib import Path
from engine.store import Store
start = float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # both processes open the store at the same moment
store = Store(Path(sys.argv[1]), sys.argv[2] or None)
print(store.schema_version())
store.close()
"""


def test_two_processes_starting_at_once_on_an_empty_database_both_succeed(tmp_path, database, request):
    """A first start creates every table; two at once on the same empty database both succeed."""
    import subprocess
    import sys
    import time

    url = ""
    if database == "postgresql":
        server = request.getfixturevalue("postgres_server")
        if isinstance(server, str):
            pytest.skip(f"PostgreSQL is not available: {server}")
        url = server.create_database(migrated=False)
    root = Path(__file__).resolve().parents[2]
    start = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE, str(tmp_path / "state"), url, start],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    latest = max(v for v, _ in store_module.MIGRATIONS)
    assert [out.strip() for out, _ in outs] == [str(latest)] * 2
    opened = Store(tmp_path / "state", url or None)
    try:
        rows = sql(opened, "SELECT version FROM schema_migrations ORDER BY version")
        assert rows == [(v,) for v, _ in store_module.MIGRATIONS]  # each applied once
        assert set(sa.inspect(opened.engine).get_table_names()) >= {"runs", "audit_log", "approval_requests"}
    finally:
        opened.close()
        if url:
            server.drop_database(url)


def test_reopening_keeps_recorded_runs(run, state_dir, db_url):
    result = run(policy({"id": "a", "type": "core.value", "params": {"value": 1}}))
    again = Store(state_dir, db_url)
    try:
        assert again.get_run(result.run_id)["status"] == "SUCCESS"
        assert [s["status"] for s in again.get_steps(result.run_id)] == ["SUCCESS"]
    finally:
        again.close()


def test_tables_are_dialect_neutral():
    """Nothing SQLite-specific: the same tables compile for PostgreSQL (ENGINE_DB_URL later)."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    for table in store_module.metadata.sorted_tables:
        for column in table.columns:
            assert type(column.type).__module__.startswith("sqlalchemy.sql"), (table.name, column.name)
        ddl = str(CreateTable(table).compile(dialect=postgresql.dialect()))
        assert ddl.startswith(f"\nCREATE TABLE {table.name}")


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        pytest.param("argument", "given", id="argument"),
        pytest.param("env", "from_env", id="ENGINE_STATE_DIR"),
        pytest.param("default", ".engine", id="default-dot-engine"),
    ],
)
def test_store_open_finds_the_state_dir(tmp_path, monkeypatch, how, expected):
    monkeypatch.chdir(tmp_path)
    if how == "env":
        monkeypatch.setenv("ENGINE_STATE_DIR", str(tmp_path / "from_env"))
    opened = Store.open(tmp_path / "given" if how == "argument" else None)
    try:
        assert opened.state_dir.resolve() == (tmp_path / expected).resolve()
        assert (tmp_path / expected / "engine.db").is_file()
    finally:
        opened.close()


def test_engine_db_url_replaces_the_sqlite_file(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("ENGINE_DB_URL", f"sqlite:///{other}")
    opened = Store.open(tmp_path / "state")
    try:
        assert opened.engine.url.database == str(other)
    finally:
        opened.close()
    assert other.is_file()
    assert not (tmp_path / "state" / "engine.db").exists()
    assert "runs" in {r[0] for r in sql(other, "SELECT name FROM sqlite_master")}


def _add_run(store: Store, run_id: str, policy_id: str, status: str, started_at: str) -> None:
    store.create_run(
        {
            "id": run_id,
            "policy_id": policy_id,
            "policy_hash": "h",
            "policy_json": "{}",
            "params_json": "{}",
            "status": status,
            "dry_run": False,
            "trigger": "manual",
            "attempt": 1,
            "started_at": started_at,
        },
        [
            {
                "step_id": "s",
                "position": 0,
                "phase": "main",
                "type": "core.value",
                "side_effects": False,
                "status": "PENDING",
                "attempts": 0,
                "definition_hash": "d",
            }
        ],
    )


def test_list_and_find_runs(store):
    _add_run(store, "20240101T000000-aaaaaa", "sales", "SUCCESS", "2024-01-01T00:00:00")
    _add_run(store, "20240102T000000-bbbbbb", "sales", "FAILED", "2024-01-02T00:00:00")
    _add_run(store, "20240103T000000-cccccc", "stock", "FAILED", "2024-01-03T00:00:00")
    assert [r["id"][-6:] for r in store.list_runs()] == ["cccccc", "bbbbbb", "aaaaaa"]  # newest first
    assert [r["id"][-6:] for r in store.list_runs(policy_id="sales")] == ["bbbbbb", "aaaaaa"]
    assert [r["id"][-6:] for r in store.list_runs(status="failed")] == ["cccccc", "bbbbbb"]
    assert [r["id"][-6:] for r in store.list_runs(limit=1)] == ["cccccc"]
    assert store.find_runs("20240102") == ["20240102T000000-bbbbbb"]
    assert store.find_runs("20240102t000000-BBB") == ["20240102T000000-bbbbbb"]  # as typed, on both databases
    assert store.find_runs("2024010_") == []  # "_" is not a wildcard
    assert sorted(store.find_runs("2024010")) == [
        "20240101T000000-aaaaaa",
        "20240102T000000-bbbbbb",
        "20240103T000000-cccccc",
    ]
    assert store.get_run("nope") is None


def test_deleting_a_run_deletes_its_steps(store, state_dir):
    _add_run(store, "r1", "p", "SUCCESS", "2024-01-01")
    with store.engine.begin() as conn:
        conn.execute(sa.delete(store_module.runs).where(store_module.runs.c.id == "r1"))
    assert store.get_steps("r1") == []


def test_another_connection_sees_the_running_state(store, state_dir, tmp_path):
    """The database can be read by another connection while the engine writes it (SQLite: WAL)."""
    import asyncio
    import json

    from engine.api import run_policy

    path = tmp_path / "p.json"
    path.write_text(json.dumps(policy({"id": "a", "type": "test.sleep", "params": {"seconds": 0.3}})))
    seen: list[tuple[Any, ...]] = []

    async def watch_while_running() -> None:
        task = asyncio.create_task(run_policy(path, store=store))
        await asyncio.sleep(0.15)
        seen.extend(sql(store, "SELECT r.status, s.status FROM runs r JOIN step_runs s ON s.run_id = r.id"))
        await task

    asyncio.run(watch_while_running())
    assert seen == [("RUNNING", "RUNNING")]
    assert sql(store, "SELECT status FROM step_runs") == [("SUCCESS",)]


# -- the runner's hot path: prepared statements on the DBAPI connection ------------------------


def _minimal_run(store: Store, run_id: str = "r1") -> None:
    store.create_run(
        {
            "id": run_id,
            "policy_id": "p",
            "policy_hash": "h",
            "policy_json": "{}",
            "params_json": "{}",
            "status": "RUNNING",
            "started_at": "2024-01-01T00:00:00+00:00",
        },
        [
            {"step_id": "a", "position": 0, "type": "core.value", "status": "PENDING", "definition_hash": "d"},
            {"step_id": "b", "position": 1, "type": "core.value", "status": "PENDING", "definition_hash": "d"},
        ],
    )


def test_create_run_fills_the_column_defaults_in_the_step_rows(store, state_dir):
    _minimal_run(store)
    rows = sql(
        store, "SELECT step_id, phase, side_effects, attempts, run_attempt, started_at FROM step_runs ORDER BY position"
    )
    # booleans: 0/1 on SQLite, false/true on PostgreSQL (equal in Python)
    assert rows == [("a", "main", 0, 0, 1, None), ("b", "main", 0, 0, 1, None)]
    assert sql(store, "SELECT dry_run, trigger, attempt FROM runs") == [(0, "manual", 1)]


def test_step_states_are_the_state_columns_in_order(store):
    _minimal_run(store)
    store.set_step_state("r1", "a", {"status": "RUNNING", "started_at": "t0"})
    states = store.step_states("r1")
    assert dict(zip(store_module.STEP_STATE_COLUMNS, states["a"], strict=True)) == {
        "status": "RUNNING",
        "attempts": 0,
        "run_attempt": 1,
        "started_at": "t0",
        "finished_at": None,
        "duration_s": None,
        "error": None,
        "skip_reason": None,
        "output_json": None,
        "output_hash": None,
        "pending_state": None,
    }
    assert states["b"][0] == "PENDING"
    assert store.step_states("nope") == {}


def test_set_step_state_writes_only_the_given_columns_and_the_attempt_in_one_commit(store, state_dir):
    _minimal_run(store)
    store.set_step_state("r1", "a", {"status": "RUNNING", "started_at": "t0", "error": "old"})
    attempt = {"run_attempt": 1, "attempt": 1, "status": "SUCCESS", "started_at": "t0", "finished_at": "t1"}
    store.set_step_state("r1", "a", {"status": "SUCCESS", "finished_at": "t1"}, {**attempt, "error": None})
    db = store
    assert sql(db, "SELECT status, started_at, finished_at, error FROM step_runs WHERE step_id = 'a'") == [
        ("SUCCESS", "t0", "t1", "old")
    ]
    assert sql(db, "SELECT step_id, status, started_at, finished_at, error FROM step_attempts") == [
        ("a", "SUCCESS", "t0", "t1", None)
    ]
    assert sql(db, "SELECT status FROM step_runs WHERE step_id = 'b'") == [("PENDING",)]


def test_set_step_state_refuses_a_column_that_is_not_step_state(store, state_dir):
    _minimal_run(store)
    with pytest.raises(ValueError, match=r"not step state columns: \['definition_hash'\]"):
        store.set_step_state("r1", "a", {"status": "RUNNING", "definition_hash": "x"})
    assert sql(store, "SELECT status, definition_hash FROM step_runs WHERE step_id = 'a'") == [("PENDING", "d")]


def test_a_failed_write_is_rolled_back_whole(store, state_dir):
    _minimal_run(store)
    attempt = {"run_attempt": 1, "attempt": 1, "status": "SUCCESS", "started_at": "t0", "finished_at": "t1"}
    import psycopg

    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):  # status is NOT NULL: the
        store.set_step_state("r1", "a", {"status": None}, {**attempt, "error": None})  # update fails after the insert
    store.set_step_state("r1", "b", {"status": "RUNNING"})  # the connection is usable again
    db = store
    assert sql(db, "SELECT step_id, status FROM step_runs ORDER BY position") == [("a", "PENDING"), ("b", "RUNNING")]
    assert sql(db, "SELECT count(*) FROM step_attempts") == [(0,)]


def test_long_ids_and_keys_are_stored_alike_on_both_databases(run, store, tmp_path):
    """SQLite never enforces VARCHAR(n); on PostgreSQL the engine's string columns have no length
    (engine.store.portable_strings), so what runs on one runs on the other."""
    policy_id = "p" + "x" * 299
    step_id = "s" * 250
    result = run(policy({"id": step_id, "type": "core.value", "params": {"value": 1}}, id=policy_id))
    assert result.status == "SUCCESS"
    assert store.get_run(result.run_id)["policy_id"] == policy_id
    assert [s["step_id"] for s in store.get_steps(result.run_id)] == [step_id]
    plugin = sa.MetaData()
    notes = sa.Table("test_notes", plugin, sa.Column("key", sa.String(8), primary_key=True))
    with store.database(plugin).begin() as conn:  # a plugin's tables get the same treatment
        conn.execute(notes.insert().values(key="k" * 100))
    assert sql(store, "SELECT length(key) FROM test_notes") == [(100,)]


def test_a_plugins_tables_created_by_several_stores_at_once(store, db_url):
    """Eight stores (as eight processes would) create the same plugin tables at the same moment:
    every one gets them (on PostgreSQL a lost race is "relation already exists", not an error)."""
    import threading

    stores = [Store(store.state_dir, db_url) for _ in range(8)]
    errors: list[BaseException] = []
    for round_ in range(3):
        plugin = sa.MetaData()
        for i in range(4):
            sa.Table(f"test_race_{round_}_{i}", plugin, sa.Column("id", sa.Integer, primary_key=True))
        barrier = threading.Barrier(len(stores))

        def create(s: Store, plugin: sa.MetaData = plugin, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                s.database(plugin)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=create, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for s in stores:
        s.close()
    assert errors == []
    assert {f"test_race_{r}_{i}" for r in range(3) for i in range(4)} <= set(sa.inspect(store.engine).get_table_names())
