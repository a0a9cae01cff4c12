"""Versioned migrations: a database made by an older engine is brought up to date in place."""

from __future__ import annotations

import sqlite3

from engine import store as store_module
from engine.store import Store


def test_a_version_1_database_is_migrated_to_the_latest(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
    old = Store(tmp_path)
    old.close()
    with sqlite3.connect(tmp_path / "engine.db") as con:
        con.execute("alter table step_runs drop column pending_state")  # as version 1 made it
    monkeypatch.undo()

    new = Store(tmp_path)
    assert new.schema_version() == len(store_module.MIGRATIONS) == 9
    new.close()
    with sqlite3.connect(tmp_path / "engine.db") as con:
        columns = {row[1] for row in con.execute("pragma table_info(step_runs)")}
        tables = {row[0] for row in con.execute("select name from sqlite_master where type = 'table'")}
        versions = [row[0] for row in con.execute("select version from schema_migrations order by version")]
    assert "pending_state" in columns
    expected = {"runs", "step_runs", "step_attempts", "pipeline_state", "schedule_slots", "run_resumes"}
    assert expected | {"schema_migrations"} <= tables
    assert versions == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_migrating_twice_changes_nothing(tmp_path):
    Store(tmp_path).close()
    again = Store(tmp_path)
    assert again.schema_version() == 9
    again.close()


def test_processes_starting_at_once_on_a_new_state_directory_all_succeed(tmp_path):
    """docs/state.md: a first concurrent start does not fail (the losers of the race retry)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    state = tmp_path / "fresh"
    code = "import sys; from engine.store import Store; s = Store(__import__('pathlib').Path(sys.argv[1])); s.close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(state)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for _ in range(12)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 12, errors
    with sqlite3.connect(state / "engine.db") as con:
        versions = [row[0] for row in con.execute("select version from schema_migrations order by version")]
    assert versions == list(range(1, len(store_module.MIGRATIONS) + 1))


def test_version_9_gives_what_is_running_a_lease_in_the_name_of_its_pid(tmp_path, monkeypatch):
    """Leases (docs/deploy.md): a RUNNING run and a CLAIMED slot recorded before version 9 get an owner
    (host:pid) and an expiry, so that another host can tell when they are left behind."""
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:8])
    old = Store(tmp_path)
    old.close()
    with sqlite3.connect(tmp_path / "engine.db") as con:  # as version 8 made them: no lease columns
        for table in ("runs", "schedule_slots"):
            con.execute(f"alter table {table} drop column owner")
            con.execute(f"alter table {table} drop column expires_at")
        con.execute(
            "insert into runs (id, policy_id, policy_hash, policy_json, params_json, status, dry_run, trigger,"
            " attempt, started_at, pid, host) values ('r1', 'p', 'h', '{}', '{}', 'RUNNING', 0, 'manual', 1,"
            " '2026-12-01T10:00:00+00:00', 4242, 'old-host')"
        )
        con.execute(
            "insert into schedule_slots (policy_id, scheduled_for, status, claimed_at, pid, host)"
            " values ('p', '2026-12-01T10:00:00+00:00', 'CLAIMED', '2026-12-01T10:00:01+00:00', 4242, 'old-host')"
        )
    monkeypatch.undo()

    new = Store(tmp_path)
    assert new.schema_version() == 9
    new.close()
    with sqlite3.connect(tmp_path / "engine.db") as con:
        for table in ("runs", "schedule_slots"):
            owner, expires = con.execute(f"select owner, expires_at from {table}").fetchone()
            assert owner == "old-host:4242"
            assert expires > "2026-12-01"
