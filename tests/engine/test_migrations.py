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
    assert new.schema_version() == len(store_module.MIGRATIONS) == 8
    new.close()
    with sqlite3.connect(tmp_path / "engine.db") as con:
        columns = {row[1] for row in con.execute("pragma table_info(step_runs)")}
        tables = {row[0] for row in con.execute("select name from sqlite_master where type = 'table'")}
        versions = [row[0] for row in con.execute("select version from schema_migrations order by version")]
    assert "pending_state" in columns
    expected = {"runs", "step_runs", "step_attempts", "pipeline_state", "schedule_slots", "run_resumes"}
    assert expected | {"schema_migrations"} <= tables
    assert versions == [1, 2, 3, 4, 5, 6, 7, 8]


def test_migrating_twice_changes_nothing(tmp_path):
    Store(tmp_path).close()
    again = Store(tmp_path)
    assert again.schema_version() == 8
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
