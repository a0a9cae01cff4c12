"""The audit log is a hash chain: appends stay linear, tampering is found at the right seq."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import psycopg
import pytest
import sqlalchemy as sa

from engine.governance import audit
from tests import pg


def fill(engine, n: int) -> None:
    for i in range(n):
        audit.record(engine, "user:ada", "run.started", f"run-{i}", {"policy_id": "daily", "i": i})


def test_entries_chain_each_to_the_previous_and_hash_their_canonical_json(engine_):
    fill(engine_, 3)
    got = audit.entries(engine_)
    assert [e.seq for e in got] == [1, 2, 3]
    assert got[0].prev_hash == audit.GENESIS
    assert [e.prev_hash for e in got[1:]] == [e.hash for e in got[:-1]]
    first = got[0]
    payload = json.dumps(
        {
            "action": first.action,
            "actor": first.actor,
            "at": first.at,
            "details": first.details,
            "prev_hash": first.prev_hash,
            "seq": first.seq,
            "subject": first.subject,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert first.hash == hashlib.sha256(payload.encode()).hexdigest()
    result = audit.verify(engine_)
    assert result.ok and result.count == 3 and result.head_hash == got[-1].hash
    assert audit.head(engine_) == (3, got[-1].hash)


def test_update_and_delete_are_rejected_by_the_database(gov_store, engine_):
    fill(engine_, 2)
    for statement in ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1", "DELETE FROM audit_log WHERE seq = 2"):
        # SQLite: RAISE(ABORT) in the trigger; PostgreSQL: RAISE EXCEPTION in the trigger's function
        with pytest.raises((sqlite3.IntegrityError, psycopg.errors.RaiseException), match="append-only"):
            pg.execute(gov_store.state_dir, statement)
    assert audit.verify(engine_).ok


def tamper(store, *sql: str) -> None:
    on = " ON audit_log" if store.engine.dialect.name == "postgresql" else ""
    pg.execute(store.state_dir, f"DROP TRIGGER audit_log_no_update{on}", f"DROP TRIGGER audit_log_no_delete{on}", *sql)


@pytest.mark.parametrize(
    ("sql", "bad_seq", "says"),
    [
        pytest.param(
            ["UPDATE audit_log SET details = '{\"i\":99}' WHERE seq = 4"], 4, "does not match its hash", id="edit"
        ),
        pytest.param(["UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 2"], 2, "edited", id="actor"),
        pytest.param(["DELETE FROM audit_log WHERE seq = 3"], 3, "missing", id="delete"),
        pytest.param(["DELETE FROM audit_log WHERE seq = 1"], 1, "missing", id="delete-first"),
        pytest.param(
            [
                "UPDATE audit_log SET seq = -1 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = -1",
            ],
            3,
            "prev_hash",
            id="reorder",
        ),
    ],
)
def test_tampering_is_found_at_the_first_bad_seq(gov_store, engine_, sql, bad_seq, says):
    fill(engine_, 6)
    tamper(gov_store, *sql)
    result = audit.verify(engine_)
    assert not result.ok
    assert result.first_bad_seq == bad_seq
    assert says in result.problems[0]
    assert any("triggers are missing" in p for p in result.problems)


def test_dropping_the_triggers_alone_is_reported(gov_store, engine_):
    fill(engine_, 2)
    tamper(gov_store)
    result = audit.verify(engine_)
    assert not result.ok and result.first_bad_seq is None
    assert result.missing_triggers == ["audit_log_no_update", "audit_log_no_delete"]


def test_a_kept_head_catches_entries_removed_from_the_end(gov_store, engine_):
    fill(engine_, 4)
    kept = audit.head(engine_)[1]
    assert audit.verify(engine_, expected_head=kept).ok
    tamper(gov_store, "DELETE FROM audit_log WHERE seq = 4")
    with gov_store.engine.begin() as conn:  # put the triggers back: only the kept head can tell
        from engine.governance import tables

        tables.create_triggers(conn)
    assert audit.verify(engine_).ok
    result = audit.verify(engine_, expected_head=kept)
    assert not result.ok and "not in the chain" in result.problems[-1]


def test_secrets_never_reach_details(engine_):
    from engine import redact

    redact.register("hunter2-secret")
    entry = audit.record(engine_, "user:ada", "delivery.sent", "run-1", {"note": "password hunter2-secret"})
    assert "hunter2-secret" not in json.dumps(entry.details)
    with engine_.connect() as conn:
        assert "hunter2-secret" not in conn.execute(sa.text("SELECT details FROM audit_log")).scalar_one()
