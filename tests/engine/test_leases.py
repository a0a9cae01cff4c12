"""Leases instead of pids (docs/deploy.md): what another host may do with a run, a slot or a claim of
this process, and when. Two stores on one database stand for two hosts (``ENGINE_HOST_ID``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.leases import LeaseSettings
from engine.store import Store
from tests import pg


@pytest.fixture
def hosts(tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Store]]:
    """``host(name)``: a store as a process on host ``name`` would open it (1 s leases, 0.2 s heartbeats)."""
    monkeypatch.setenv("ENGINE_LEASE_S", "1")
    monkeypatch.setenv("ENGINE_HEARTBEAT_S", "0.2")
    opened: list[Store] = []

    def host(name: str) -> Store:
        monkeypatch.setenv("ENGINE_HOST_ID", name)
        store = Store(tmp_path / "state", db_url)
        opened.append(store)
        return store

    yield host
    for store in opened:
        store.close()


def start_run(store: Store, run_id: str, policy_id: str = "p") -> None:
    run = {
        "id": run_id,
        "policy_id": policy_id,
        "policy_hash": "h",
        "policy_json": "{}",
        "params_json": "{}",
        "status": "RUNNING",
        "started_at": "2026-12-01T10:00:00+00:00",
    }
    step = {"step_id": "s", "position": 0, "type": "core.value", "status": "RUNNING", "definition_hash": "d"}
    store.create_run(run, [step])


def row(store: Store, query: str, *args: object) -> tuple[object, ...]:
    [found] = pg.sql(store.state_dir, query, *args)
    return found


def test_a_run_carries_its_owner_and_an_expiry_a_lease_ahead(hosts):
    a = hosts("host-a")
    start_run(a, "r1")
    owner, expires, host = row(a, "select owner, expires_at, host from runs where id = ?", "r1")
    assert owner == f"host-a:{a.leases.pid}" and host == "host-a"
    assert a.leases.now_text() < str(expires) <= a.leases.until()  # about a lease (1 s) ahead


def test_another_host_leaves_a_run_alone_while_its_heartbeat_renews_the_lease(hosts):
    a, b = hosts("host-a"), hosts("host-b")
    start_run(a, "r1")
    first = row(a, "select expires_at from runs where id = ?", "r1")[0]
    time.sleep(1.5)  # longer than the lease: only the heartbeat keeps it
    assert b.mark_interrupted() == []
    assert row(b, "select status from runs where id = ?", "r1") == ("RUNNING",)
    assert row(a, "select expires_at from runs where id = ?", "r1")[0] > first


def test_when_a_hosts_heartbeat_stops_another_host_marks_its_run_interrupted_after_the_lease(hosts):
    a, b = hosts("host-a"), hosts("host-b")
    start_run(a, "r1")
    a.leases.stop()  # host-a is gone (no heartbeat): its pid is not checked from host-b
    assert b.mark_interrupted() == []  # the lease still holds
    time.sleep(1.2)
    assert b.mark_interrupted() == ["r1"]
    assert row(b, "select status, error from runs where id = ?", "r1") == (
        "FAILED",
        "interrupted: the engine process stopped",
    )
    assert row(b, "select status, attempts from step_runs where run_id = ?", "r1") == ("FAILED", 1)
    assert b.mark_interrupted() == []  # once


def test_a_slot_claimed_by_a_live_host_is_an_overlap_and_after_its_lease_can_be_taken_over(hosts):
    a, b = hosts("host-a"), hosts("host-b")
    assert a.claim_slot("p", "2026-12-01T10:00:00+00:00", "r1") == "run"
    assert b.claim_slot("p", "2026-12-01T11:00:00+00:00", "r2") == "overlap"  # a's claim is active
    [claim] = b.list_slots(status="CLAIMED")
    assert not b.slot_lease_expired(claim)
    a.leases.stop()
    time.sleep(1.2)
    [claim] = b.list_slots(status="CLAIMED")
    assert b.slot_lease_expired(claim)
    assert b.take_over_slot(claim)
    assert not hosts("host-c").take_over_slot(claim)  # the claim as read is gone: only one takes it
    assert row(b, "select owner from schedule_slots where status = 'CLAIMED'")[0] == b.leases.owner


def test_a_host_whose_run_was_taken_over_stops_writing_to_it(hosts):
    a, b = hosts("host-a"), hosts("host-b")
    start_run(a, "r1")
    lost: list[str] = []
    a.leases.watch("r1", lambda owner: (a.fence("r1"), lost.append(owner)))
    a.leases.stop()  # a network partition: host-a cannot renew
    time.sleep(1.2)
    assert b.mark_interrupted() == ["r1"]
    b.claim_resume("r1", 2, resets={}, run_values={})
    a.leases.renew()  # host-a is back: its heartbeat finds the run owned by host-b
    assert lost == [b.leases.owner]
    a.update_run("r1", status="CANCELLED")  # dropped: the run is host-b's now
    assert row(b, "select status, owner, attempt from runs where id = ?", "r1") == ("RUNNING", b.leases.owner, 2)


def test_on_its_own_host_a_dead_pid_needs_no_wait(hosts):
    import subprocess
    import sys

    a = hosts("host-a")
    start_run(a, "r1")
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    pg.execute(a.state_dir, ("update runs set pid = ?, owner = ?", (dead, f"host-a:{dead}")))
    assert hosts("host-a").mark_interrupted() == ["r1"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ENGINE_LEASE_S": "0"}, "ENGINE_LEASE_S='0': must be a number of seconds above 0"),
        ({"ENGINE_LEASE_S": "soon"}, "ENGINE_LEASE_S='soon': must be a number of seconds above 0"),
        ({"ENGINE_LEASE_S": "10", "ENGINE_HEARTBEAT_S": "10"}, "ENGINE_HEARTBEAT_S=10 must be below ENGINE_LEASE_S=10"),
    ],
)
def test_lease_settings_that_cannot_work_are_refused_with_the_fix(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        LeaseSettings.from_env()


def test_the_default_lease_is_30_s_renewed_every_10_s(monkeypatch):
    monkeypatch.delenv("ENGINE_LEASE_S", raising=False)
    monkeypatch.delenv("ENGINE_HEARTBEAT_S", raising=False)
    assert LeaseSettings.from_env() == LeaseSettings(30.0, 10.0)


def test_engine_artifacts_dir_holds_the_artifacts_and_the_delivery_journal(tmp_path, db_url, monkeypatch):
    """docs/deploy.md: ENGINE_ARTIFACTS_DIR is the artifacts folder every host reaches; the delivery
    journal sits in it; a workspace other than default keeps its own under workspaces/NAME."""
    import asyncio
    import json

    from engine.api import run_policy
    from engine.workspaces import artifacts_dir_for
    from tests.conftest import policy

    shared = tmp_path / "shared"
    monkeypatch.setenv("ENGINE_ARTIFACTS_DIR", str(shared))
    store = Store(tmp_path / "state", db_url)
    try:
        path = tmp_path / "p.json"
        path.write_text(json.dumps(policy({"id": "page", "type": "test.artifact", "params": {"text": "hi"}})))
        assert asyncio.run(run_policy(path, store=store)).status == "SUCCESS"
        [(output,)] = pg.sql(store.state_dir, "select output_json from step_runs where step_id = 'page'")
        stored = Path(json.loads(output)["path"])
        assert stored.parent.parent == shared and stored.read_text() == "hi"
        assert not (tmp_path / "state" / "artifacts").exists()
        assert store.artifacts().shared_dir == shared  # where send steps keep deliveries.journal
    finally:
        store.close()
    assert artifacts_dir_for("default") == shared
    assert artifacts_dir_for("team-a") == shared / "workspaces" / "team-a"
    monkeypatch.delenv("ENGINE_ARTIFACTS_DIR")
    assert artifacts_dir_for("team-a") is None
    plain = Store(tmp_path / "other", None)
    assert (plain.artifacts_dir, plain.artifacts().shared_dir) == (tmp_path / "other" / "artifacts", tmp_path / "other")
    plain.close()
