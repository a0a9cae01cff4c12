"""send.email after the server accepted: a locked state database can neither lose the
acceptance nor fail the step, and no resume sends the message again (the deliveries journal)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import steps.send.deliveries
import tests.sendkit  # noqa: F401  (test.report: a real PDF and an HTML page as artifacts)
from tests.conftest import ROOT, policy
from tests.smtpserver import *  # noqa: F403  (the SMTP server fixtures)
from tests.smtpserver import ALLOW_POLICY_HOST

SLOT = "2026-12-01T07:00:00+00:00"


def mail(server):
    send = {"from": "reports@example.com", "to": ["ann@example.com", "bob@example.com"], "subject": "Daily"}
    send.update(text="Revenue was 1,234.50 EUR.", backoff_s=0, **server.params())
    return policy({"id": "mail", "type": "send.email", "params": send}, id="daily")


def rows(state_dir):
    with sqlite3.connect(state_dir / "engine.db") as con:
        return con.execute("select run_id, recipient, status, error from deliveries order by id").fetchall()


class WriteLock:
    """A write lock on engine.db held from another connection, as another process would."""

    def __init__(self, db):
        self.con = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=30)
        self.held = threading.Event()

    def take(self):
        self.con.execute("BEGIN IMMEDIATE")
        self.held.set()

    def release(self):
        self.con.execute("ROLLBACK")
        self.con.close()


def wait_for(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_lock_held_over_10_s_after_acceptance_does_not_fail_the_step_and_the_slot_is_not_sent_again(
    run, state_dir, smtp_server
):
    """The engine's SQLite busy timeout is 10 s: before the journal, the sent rows failed with a raw
    'database is locked' after the mail went out, and a second run of the slot sent it again."""
    doc = mail(smtp_server)
    run(policy({"id": "warm", "type": "core.value", "params": {"value": 1}}))  # engine.db exists
    lock = WriteLock(state_dir / "engine.db")
    smtp_server.handler.on_data = lock.take  # locked before the server's 250: the sent rows must wait
    # over the 10 s busy timeout from the step's first wait; the runner's own write waits it out
    releaser = threading.Timer(10.5, lock.release)
    releaser.start()
    try:
        first = run(doc, scheduled_for=SLOT)
    finally:
        releaser.join()
    assert first.status == "SUCCESS", first.steps[0].error
    assert len(smtp_server.handler.messages) == 1
    journal = state_dir / "deliveries.journal"
    (entry,) = [json.loads(line) for line in journal.read_text().splitlines()]
    assert (entry["run_id"], entry["sent"]) == (first.run_id, ["ann@example.com", "bob@example.com"])
    assert [r[2] for r in rows(state_dir)] == ["sending", "sending"]  # the journal holds the truth

    smtp_server.handler.on_data = None
    second = run(doc, scheduled_for=SLOT)  # the same slot again: resolves the journal, sends nothing
    assert second.status == "SUCCESS"
    assert len(smtp_server.handler.messages) == 1
    assert rows(state_dir) == [
        (first.run_id, "ann@example.com", "sent", None),
        (first.run_id, "bob@example.com", "sent", None),
        (second.run_id, "ann@example.com", "duplicate", None),
        (second.run_id, "bob@example.com", "duplicate", None),
    ]
    assert journal.read_text() == ""


def engine_env(state_dir, server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env.update(ENGINE_STATE_DIR=str(state_dir), ENGINE_PLUGINS="tests.stepkit,tests.sendkit", PYTHONPATH=str(ROOT))
    return {**env, **ALLOW_POLICY_HOST}


def start_engine(write_policy, state_dir, server, tmp_path):
    path = write_policy(mail(server))
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=engine_env(state_dir, server),
        cwd=tmp_path,
    )


def run_id(state_dir):
    with sqlite3.connect(state_dir / "engine.db") as con:
        (row,) = con.execute("select id from runs").fetchall()
    return row[0]


def test_killed_while_the_database_is_locked_after_acceptance_the_resume_sends_nothing(
    cli, write_policy, state_dir, smtp_server, tmp_path
):
    state_dir.mkdir(parents=True)
    sqlite3.connect(state_dir / "engine.db").close()
    lock = WriteLock(state_dir / "engine.db")
    smtp_server.handler.on_data = lock.take
    journal = state_dir / "deliveries.journal"
    engine = start_engine(write_policy, state_dir, smtp_server, tmp_path)
    try:
        wait_for(lambda: journal.exists() and journal.read_text().endswith("\n"))
        assert engine.poll() is None  # still waiting for the lock to write the sent rows
    finally:
        engine.kill()
        engine.wait()
        if lock.held.is_set():
            lock.release()
    assert len(smtp_server.handler.messages) == 1
    assert [r[2] for r in rows(state_dir)] == ["sending", "sending"]

    smtp_server.handler.on_data = None
    resumed = cli("resume", run_id(state_dir), "--json", env=engine_env(state_dir, smtp_server))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "SUCCESS"
    assert len(smtp_server.handler.messages) == 1
    assert [r[1:3] for r in rows(state_dir)] == [
        ("ann@example.com", "sent"),
        ("bob@example.com", "sent"),
        ("ann@example.com", "duplicate"),
        ("bob@example.com", "duplicate"),
    ]


def test_killed_before_the_server_answered_the_resume_sends_again_as_documented(
    cli, write_policy, state_dir, smtp_server, tmp_path
):
    """No journal entry: the outcome is unknown (the server may have the message); it is sent again."""
    answer = threading.Event()
    smtp_server.handler.on_data = lambda: answer.wait(30)  # the server holds its reply to the data
    engine = start_engine(write_policy, state_dir, smtp_server, tmp_path)
    try:
        wait_for(lambda: smtp_server.handler.data_attempts == 1)
    finally:
        engine.kill()
        engine.wait()
        answer.set()
    wait_for(lambda: len(smtp_server.handler.messages) == 1)  # it did arrive
    smtp_server.handler.on_data = None
    resumed = cli("resume", run_id(state_dir), "--json", env=engine_env(state_dir, smtp_server))
    assert json.loads(resumed.stdout)["status"] == "SUCCESS", resumed.stderr
    assert len(smtp_server.handler.messages) == 2
    abandoned = steps.send.deliveries.ABANDONED
    assert [r[1:] for r in rows(state_dir)] == [
        ("ann@example.com", "failed", abandoned),
        ("bob@example.com", "failed", abandoned),
        ("ann@example.com", "sent", None),
        ("bob@example.com", "sent", None),
    ]
