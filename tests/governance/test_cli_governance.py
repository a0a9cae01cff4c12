"""Governance through the real `engine` command: approval by hash, exit code 4, scheduled slots
that are refused, the audit chain under two concurrent processes, tampering, quotas."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture
def engine_cmd(tmp_path: Path, cli):
    """`engine` with require_approval on (an engine.toml in the working directory)."""
    (tmp_path / "engine.toml").write_text("[governance]\nrequire_approval = true\n", encoding="utf-8")

    def go(*args: str, actor: str = "user:ada", env: dict | None = None) -> subprocess.CompletedProcess[str]:
        return cli(*args, env={"ENGINE_ACTOR": actor, **(env or {})})

    return go


def write(tmp_path: Path, value: int = 1, schedule: dict | None = None, name: str = "daily.json") -> Path:
    doc: dict = {
        "schema_version": 1,
        "id": "daily",
        "steps": [{"id": "a", "type": "core.value", "params": {"value": value}}],
    }
    if schedule:
        doc["schedule"] = schedule
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def approval_hash(engine_cmd, policy: Path) -> str:
    out = engine_cmd("plan", str(policy), "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["approval"]["hash"]


def test_refused_until_approved_by_hash_then_refused_again_after_revoke(engine_cmd, tmp_path, state_dir):
    policy = write(tmp_path)
    refused = engine_cmd("run", str(policy))
    assert refused.returncode == 4
    digest = approval_hash(engine_cmd, policy)
    for part in ("'daily'", digest, "user:ada", f"engine approve daily --hash {digest}"):
        assert part in refused.stderr
    # nothing was recorded as started
    with sqlite3.connect(state_dir / "engine.db") as con:
        assert con.execute("select count(*) from runs").fetchone()[0] == 0
    # a dry run is always allowed, and shows the hash to review
    dry = engine_cmd("run", str(policy), "--dry-run", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout)["approval"] == {
        "hash": digest,
        "approved": False,
        "approved_by": None,
        "approved_at": None,
    }
    approved = engine_cmd("approve", "daily", "--hash", digest[:12], "--note", "checked", actor="user:bob")
    assert approved.returncode == 0, approved.stderr
    run = engine_cmd("run", str(policy), "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["approval"]["approved_by"] == "user:bob" and result["actor"] == "user:ada"
    assert engine_cmd("revoke", "daily", "--hash", digest, actor="user:bob").returncode == 0
    assert engine_cmd("run", str(policy)).returncode == 4


def test_a_one_byte_change_is_version_2_and_needs_approval_a_schedule_change_does_not(engine_cmd, tmp_path):
    policy = write(tmp_path, schedule={"cron": "0 7 * * *"})
    digest = approval_hash(engine_cmd, policy)
    assert engine_cmd("policy", "add", str(policy)).returncode == 0
    assert engine_cmd("approve", "daily", "--hash", digest, actor="user:bob").returncode == 0
    write(tmp_path, schedule={"cron": "0 8 * * *"})
    assert engine_cmd("run", str(policy)).returncode == 0  # version 2, same approval hash
    write(tmp_path, value=2, schedule={"cron": "0 8 * * *"})  # "1" -> "2": one byte
    assert engine_cmd("run", str(policy)).returncode == 4
    history = json.loads(engine_cmd("policy", "history", "daily", "--json").stdout)["versions"]
    assert [(v["version"], v["approval"]["approved"]) for v in history] == [(1, True), (2, True), (3, False)]
    diff = engine_cmd("policy", "diff", "daily")
    assert '-        "value": 1' in diff.stdout and '+        "value": 2' in diff.stdout
    log = json.loads(engine_cmd("audit", "log", "--policy", "daily", "--json").stdout)["entries"]
    assert "policy.schedule_changed" in [e["action"] for e in log]


def test_separate_approver(engine_cmd, tmp_path):
    (tmp_path / "engine.toml").write_text(
        "[governance]\nrequire_approval = true\nseparate_approver = true\n", encoding="utf-8"
    )
    policy = write(tmp_path)
    assert engine_cmd("policy", "add", str(policy), actor="user:ada").returncode == 0
    digest = approval_hash(engine_cmd, policy)
    own = engine_cmd("approve", "daily", "--hash", digest, actor="user:ada")
    assert own.returncode == 4 and "another person must approve it" in own.stderr
    assert engine_cmd("approve", "daily", "--hash", digest, actor="user:bob").returncode == 0


def test_policy_add_refuses_an_invalid_file_and_records_nothing(engine_cmd, tmp_path, state_dir):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1, "id": "bad", "steps": [{"id": "a", "type": "core.nope"}]}')
    out = engine_cmd("policy", "add", str(bad))
    assert out.returncode == 2 and "/steps/0/type" in out.stderr
    assert "nothing recorded" in out.stderr
    listed = engine_cmd("policy", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["policies"] == []


def test_a_scheduled_slot_of_an_unapproved_version_is_skipped_with_its_reason(engine_cmd, tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, schedule={"cron": "* * * * *", "catchup": "latest"})
    due = engine_cmd("due", str(folder), "--json")
    assert due.returncode == 0, due.stderr
    ran = json.loads(due.stdout)
    assert [(r["status"], r["reason"]) for r in ran["runs"]] == [("SKIPPED", "not approved")]
    runs = json.loads(engine_cmd("runs", "--json").stdout)["runs"]
    assert runs[0]["status"] == "SKIPPED" and runs[0]["error"] == "skipped: not approved"
    assert runs[0]["run_id"] is None
    schedule = engine_cmd("schedule", str(folder))
    assert "not approved" in schedule.stdout


def test_quota_runs_per_hour_refuses_with_exit_4_and_says_when(engine_cmd, tmp_path):
    (tmp_path / "engine.toml").write_text("[quotas]\nruns_per_hour = 2\n", encoding="utf-8")
    policy = write(tmp_path)
    assert engine_cmd("run", str(policy)).returncode == 0
    assert engine_cmd("run", str(policy)).returncode == 0
    assert engine_cmd("run", str(policy), "--dry-run").returncode == 0  # dry runs count toward none
    third = engine_cmd("run", str(policy))
    assert third.returncode == 4
    assert "quota runs_per_hour reached for user:ada: 2 used in the last hour" in third.stderr
    assert engine_cmd("run", str(policy), actor="user:bob").returncode == 0  # per actor


def test_the_chain_stays_linear_under_two_concurrent_processes(engine_cmd, tmp_path, state_dir, db_url):
    policy = write(tmp_path)
    assert engine_cmd("policy", "add", str(policy)).returncode == 0
    script = """
import sys
from engine.store import Store
from engine.governance import audit, registry
store = Store.open(sys.argv[1])
for i in range(100):
    if i % 10 == 0:
        registry.record_version(store.engine, {"schema_version": 1, "id": "p" + sys.argv[2], "steps": [
            {"id": "a", "type": "core.value", "params": {"value": i}}]}, actor="user:" + sys.argv[2], source="cli")
    else:
        audit.record(store.engine, "user:" + sys.argv[2], "run.started", f"run-{sys.argv[2]}-{i}", {"i": i})
store.close()
"""
    env = {"PYTHONPATH": str(ROOT), **({"ENGINE_DB_URL": db_url} if db_url else {})}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(state_dir), name], env=env, cwd=tmp_path)
        for name in ("x", "y")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    verified = engine_cmd("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("verified 201 entries, head ")
    head = engine_cmd("audit", "head").stdout.split()
    assert head[0] == "201" and verified.stdout.split()[-1] == head[1]


@pytest.mark.parametrize(
    ("sql", "bad_seq"),
    [
        ("UPDATE audit_log SET details = '{}' WHERE seq = 2", 2),
        ("DELETE FROM audit_log WHERE seq = 2", 2),
    ],
)
def test_audit_verify_names_the_first_bad_seq(engine_cmd, tmp_path, state_dir, sql, bad_seq):
    policy = write(tmp_path)
    for value in (1, 2, 3):
        write(tmp_path, value=value)
        engine_cmd("policy", "add", str(policy))
    con = sqlite3.connect(state_dir / "engine.db")
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("DROP TRIGGER audit_log_no_delete")
    con.execute(sql)
    con.commit()
    con.close()
    out = engine_cmd("audit", "verify")
    assert out.returncode == 1
    assert f"first bad entry: seq {bad_seq}" in out.stderr
    assert "triggers are missing" in out.stderr
