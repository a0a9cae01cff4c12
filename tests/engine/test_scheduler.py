"""The scheduler: the real ``engine serve`` in subprocesses, on second-level test schedules
(``interval_seconds``), then the same logic in process under a frozen clock.

Each daemon test starts daemons on a state directory under ``tmp_path``, stops or kills them, and reads
what happened straight from the database (SQLite, or the test's PostgreSQL database: tests/pg.py).
Times are bounded by polling for the state a test needs, never by fixed sleeps alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import EngineConfig
from engine.scheduler import Scheduler
from engine.store import Store
from tests import pg

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "policies"
    path.mkdir()
    return path


@pytest.fixture
def state(tmp_path: Path, db_url: str | None) -> Path:
    path = tmp_path / "state"
    Store(path, db_url).close()  # create the tables once, before daemons race to use them
    return path


def write(folder: Path, doc: dict[str, Any], name: str | None = None) -> Path:
    path = folder / (name or f"{doc['id']}.json")
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def scheduled(policy_id: str, schedule: dict[str, Any], *steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"schema_version": 1, "id": policy_id, "schedule": schedule, "steps": list(steps), **top}


def sleep_step(seconds: float, sid: str = "nap") -> dict[str, Any]:
    return {"id": sid, "type": "test.sleep", "params": {"seconds": seconds, "value": {"ref": "ctx.run.scheduled_for"}}}


def shell_sleep(seconds: float, read_only: bool) -> dict[str, Any]:
    return {"id": "work", "type": "core.shell", "params": {"argv": ["sleep", str(seconds)], "read_only": read_only}}


@pytest.fixture
def serve(state: Path, folder: Path, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``engine serve FOLDER`` in the background; whatever is still running is killed at the end."""
    started: list[subprocess.Popen[str]] = []
    files: list[Any] = []

    def start(*extra: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
        env.update({"ENGINE_STATE_DIR": str(state), "ENGINE_PLUGINS": "tests.stepkit", "PYTHONPATH": str(ROOT)})
        if os.environ.get("ENGINE_DB_URL"):  # the test runs on PostgreSQL
            env["ENGINE_DB_URL"] = os.environ["ENGINE_DB_URL"]
        log = open(tmp_path / f"serve-{len(started)}.log", "w", encoding="utf-8")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", *extra, str(folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        started.append(proc)
        files.append(log)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for log in files:
        log.close()


def query(state: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return pg.sql(state, sql, *args)


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {check.__doc__ or check}")


def stop(proc: subprocess.Popen[str], timeout: float = 15.0) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def log_events(tmp_path: Path, index: int = 0) -> list[dict[str, Any]]:
    events = []
    for line in (tmp_path / f"serve-{index}.log").read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def test_serve_runs_each_slot_once_with_its_slot_as_the_logical_date(serve, state, folder, tmp_path):
    write(folder, scheduled("tick", {"interval_seconds": 1}, sleep_step(0.05)))
    proc = serve()

    def three_runs() -> bool:
        """three finished scheduled runs"""
        return len(query(state, "select 1 from runs where status = 'SUCCESS'")) >= 3

    wait_for(three_runs)
    assert stop(proc) == 0
    rows = query(
        state,
        "select r.scheduled_for, r.trigger, s.output_json, l.status from runs r "
        "join step_runs s on s.run_id = r.id join schedule_slots l on l.run_id = r.id order by r.scheduled_for",
    )
    slots = [r[0] for r in rows]
    assert len(slots) == len(set(slots)) >= 3  # one run per slot
    for slot, trigger, output, status in rows:
        assert trigger == "schedule"
        assert json.loads(output) == slot  # ctx.run.scheduled_for is the slot
        assert status == "SUCCESS"
        assert slot.endswith("+00:00") and slot[17:19].isdigit()
    events = [e["event"] for e in log_events(tmp_path)]
    assert {"schedule.loaded", "schedule.next", "schedule.fire", "schedule.finished", "schedule.stopping"} <= set(
        events
    )


def test_an_invalid_edit_keeps_the_last_valid_version_and_is_logged(serve, state, folder, tmp_path):
    path = write(folder, scheduled("tick", {"interval_seconds": 1}, sleep_step(0.05)))
    write(folder, {"schema_version": 1, "id": "broken", "steps": []}, "broken.json")
    proc = serve()
    wait_for(lambda: query(state, "select 1 from runs where status = 'SUCCESS'"))
    # written whole (a scan must not catch the file half-written: that would be a version of its own)
    edited = path.with_suffix(".tmp")
    edited.write_text(json.dumps({"schema_version": 1, "id": "tick", "schedule": {"cron": "nope"}, "steps": []}))
    edited.replace(path)
    before = len(query(state, "select 1 from runs"))

    def more_runs() -> bool:
        """runs of the last valid version after the bad edit"""
        return len(query(state, "select 1 from runs where status = 'SUCCESS'")) >= before + 2

    wait_for(more_runs)
    assert stop(proc) == 0
    events = log_events(tmp_path)
    invalid = [e for e in events if e["event"] == "schedule.invalid"]
    edits = [e for e in events if e["event"] == "schedule.invalid_edit"]
    assert [e["path"] for e in invalid] == [str(folder / "broken.json")]
    assert invalid[0]["problems"] == ["/steps: must not be empty"]
    assert len(edits) == 1 and edits[0]["action"] == "keeping the last valid version"
    assert "/schedule/cron: a cron expression has 5 fields" in edits[0]["problems"][0]


def test_an_id_shared_by_two_files_runs_neither_until_one_is_removed_and_is_logged_once(serve, state, folder, tmp_path):
    first = write(folder, scheduled("tick", {"interval_seconds": 1}, sleep_step(0.05)), "a.json")
    second = write(folder, scheduled("tick", {"interval_seconds": 1}, sleep_step(0.05)), "b.json")
    proc = serve()

    def duplicate_logged() -> bool:
        """the duplicate id logged"""
        return "schedule.duplicate_id" in (tmp_path / "serve-0.log").read_text(encoding="utf-8")

    wait_for(duplicate_logged)
    time.sleep(2.5)  # a few ticks and slots go by: nothing runs, nothing is logged again
    assert query(state, "select count(*) from schedule_slots") == [(0,)]
    second.unlink()
    wait_for(lambda: query(state, "select 1 from runs where status = 'SUCCESS'"))
    assert stop(proc) == 0
    assert {row[0] for row in query(state, "select policy_path from runs")} == {str(first)}
    events = log_events(tmp_path)
    [duplicate] = [e for e in events if e["event"] == "schedule.duplicate_id"]
    assert (duplicate["level"], duplicate["policy_id"]) == ("error", "tick")
    assert duplicate["files"] == [str(first), str(second)]
    assert duplicate["problem"] == (
        f"/id: policy id 'tick' is used by 2 files: {first}, {second}; none of them runs until only one has it"
    )
    [resolved] = [e for e in events if e["event"] == "schedule.duplicate_resolved"]
    assert resolved["path"] == str(first)


def test_kill_9_mid_run_then_restart_resumes_a_side_effect_free_run_without_a_second_run(serve, state, folder):
    write(folder, scheduled("report", {"interval_seconds": 3600}, shell_sleep(1.5, read_only=True)))
    first = serve()
    wait_for(lambda: query(state, "select 1 from step_runs where status = 'RUNNING'"))
    first.kill()  # SIGKILL: no chance to clean up
    first.wait()
    assert query(state, "select status from runs") == [("RUNNING",)]
    second = serve()

    def resumed() -> bool:
        """the interrupted run resumed to SUCCESS"""
        return query(state, "select status from runs") == [("SUCCESS",)]

    wait_for(resumed)
    assert stop(second) == 0
    [(run_id, attempt, slot)] = query(state, "select id, attempt, scheduled_for from runs")
    assert attempt == 2  # the same run, resumed: not a second run for the slot
    assert query(state, "select scheduled_for, status, reason, run_id from schedule_slots") == [
        (slot, "SUCCESS", "resumed after an interruption", run_id)
    ]


def test_kill_9_during_a_side_effect_leaves_the_run_failed_for_a_person(serve, state, folder, tmp_path):
    write(folder, scheduled("mailer", {"interval_seconds": 3600}, shell_sleep(4, read_only=False)))
    first = serve()
    wait_for(lambda: query(state, "select 1 from step_runs where status = 'RUNNING'"))
    first.kill()
    first.wait()
    second = serve()

    def recorded() -> list[tuple[Any, ...]]:
        """the slot recorded FAILED"""
        return query(state, "select status, reason from schedule_slots where status != 'CLAIMED'")

    assert wait_for(recorded) == [("FAILED", "interrupted during work (side effects): left FAILED for a person")]
    assert stop(second) == 0
    [(run_id, status, error)] = query(state, "select id, status, error from runs")
    assert (status, error) == ("FAILED", "interrupted: the engine process stopped")
    [event] = [e for e in log_events(tmp_path, 1) if e["event"] == "schedule.interrupted"]
    assert event["action"] == f"check what the steps did, then: engine resume {run_id}"
    assert event["steps"] == ["work"]


def test_two_daemons_on_one_state_directory_never_both_run_a_slot(serve, state, folder):
    write(folder, scheduled("race", {"interval_seconds": 1}, sleep_step(0.1)))
    daemons = [serve(), serve()]

    def four_slots() -> bool:
        """four finished slots"""
        return len(query(state, "select 1 from schedule_slots where status = 'SUCCESS'")) >= 4

    wait_for(four_slots)
    assert [stop(d) for d in daemons] == [0, 0]
    per_slot = query(state, "select scheduled_for, count(*) from runs group by scheduled_for")
    assert per_slot and all(count == 1 for _, count in per_slot)
    assert len(query(state, "select 1 from runs")) == len(
        query(state, "select 1 from schedule_slots where run_id is not null")
    )
    assert_never_parallel(state, "race")


def assert_never_parallel(state: Path, policy_id: str) -> None:
    spans = query(state, "select started_at, finished_at from runs where policy_id = ? order by started_at", policy_id)
    for (_, finished), (started, _) in zip(spans, spans[1:], strict=False):
        assert finished is not None and finished <= started


def test_a_slot_due_while_the_previous_run_goes_on_is_coalesced_as_overlap(serve, state, folder, tmp_path):
    write(folder, scheduled("slow", {"interval_seconds": 1}, sleep_step(2.2)))
    proc = serve()

    def overlaps() -> bool:
        """two slots skipped for overlap and two runs finished"""
        skipped = query(state, "select 1 from schedule_slots where status = 'SKIPPED' and reason = 'overlap'")
        done = query(state, "select 1 from runs where status = 'SUCCESS'")
        return len(skipped) >= 2 and len(done) >= 2

    wait_for(overlaps, timeout=20)
    assert stop(proc) == 0
    assert_never_parallel(state, "slow")
    logged = [e for e in log_events(tmp_path) if e["event"] == "schedule.skipped"]
    assert logged and {e["reason"] for e in logged} == {"overlap"}
    skipped = query(state, "select run_id from schedule_slots where status = 'SKIPPED'")
    assert {r[0] for r in skipped} == {None}  # a coalesced slot never gets a run


def test_sigterm_cancels_running_steps_after_the_grace_period_and_exits_0(serve, state, folder):
    write(folder, scheduled("long", {"interval_seconds": 3600}, sleep_step(30)))
    proc = serve("--grace-s", "0.3")
    wait_for(lambda: query(state, "select 1 from step_runs where status = 'RUNNING'"))
    began = time.monotonic()
    assert stop(proc, timeout=10) == 0
    assert time.monotonic() - began < 5
    [(status, error)] = query(state, "select status, error from runs")
    assert status == "CANCELLED"
    assert error == "cancelled: engine serve stopped, grace period of 0.3 s over"
    assert query(state, "select status from schedule_slots") == [("CANCELLED",)]


def test_sigterm_lets_a_run_finish_within_the_grace_period(serve, state, folder):
    write(folder, scheduled("short", {"interval_seconds": 3600}, sleep_step(0.8)))
    proc = serve("--grace-s", "10")
    wait_for(lambda: query(state, "select 1 from step_runs where status = 'RUNNING'"))
    assert stop(proc) == 0
    assert query(state, "select status from runs") == [("SUCCESS",)]
    assert query(state, "select status from schedule_slots") == [("SUCCESS",)]


# -- in process, under a frozen clock -----------------------------------------------------------


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def due_at(store: Store, folder: Path, now: str) -> list[tuple[str, str, str | None]]:
    scheduler = Scheduler(store, [folder], EngineConfig({}), clock=lambda: utc(now))
    outcomes, _invalid = asyncio.run(scheduler.due())
    return [(o.scheduled_for, o.status, o.reason) for o in outcomes]


def slots(store: Store) -> list[tuple[str, str, str | None]]:
    return [(s["scheduled_for"], s["status"], s["reason"]) for s in store.list_slots()]


def test_catchup_all_runs_every_missed_slot_in_order(store, folder):
    write(folder, scheduled("hourly", {"interval_minutes": 60, "catchup": "all", "max_catchup": 3}, sleep_step(0)))
    assert due_at(store, folder, "2026-12-01T10:05") == [("2026-12-01T10:00:00+00:00", "SUCCESS", None)]
    assert due_at(store, folder, "2026-12-01T15:30") == [
        ("2026-12-01T13:00:00+00:00", "SUCCESS", None),
        ("2026-12-01T14:00:00+00:00", "SUCCESS", None),
        ("2026-12-01T15:00:00+00:00", "SUCCESS", None),
    ]
    outputs = [json.loads(s["output_json"]) for r in store.list_runs(limit=None) for s in store.get_steps(r["id"])]
    assert sorted(outputs) == [f"2026-12-01T{h}:00:00+00:00" for h in (10, 13, 14, 15)]


def test_catchup_latest_runs_only_the_newest_missed_slot(store, folder):
    write(folder, scheduled("hourly", {"interval_minutes": 60}, sleep_step(0)))
    due_at(store, folder, "2026-12-01T10:05")
    assert due_at(store, folder, "2026-12-01T15:30") == [("2026-12-01T15:00:00+00:00", "SUCCESS", None)]


def test_catchup_none_records_a_late_slot_as_missed_and_runs_nothing(store, folder):
    doc = scheduled("hourly", {"interval_minutes": 60, "catchup": "none", "misfire_grace_s": 60}, sleep_step(0))
    write(folder, doc)
    due_at(store, folder, "2026-12-01T10:00:30")
    assert due_at(store, folder, "2026-12-01T15:30") == []
    assert slots(store) == [
        ("2026-12-01T10:00:00+00:00", "SUCCESS", None),
        ("2026-12-01T15:00:00+00:00", "SKIPPED", "missed"),
    ]
    assert due_at(store, folder, "2026-12-01T16:00:10") == [("2026-12-01T16:00:00+00:00", "SUCCESS", None)]


def test_catchup_none_a_new_policy_waits_for_its_next_slot(store, folder):
    write(folder, scheduled("daily", {"cron": "0 7 * * *", "catchup": "none"}, sleep_step(0)))
    assert due_at(store, folder, "2026-12-01T15:00") == []  # added in the afternoon: no run now
    assert slots(store) == [("2026-12-01T07:00:00+00:00", "SKIPPED", "missed")]
    assert due_at(store, folder, "2026-12-02T07:00:20") == [("2026-12-02T07:00:00+00:00", "SUCCESS", None)]


def test_a_wall_clock_jump_forward_is_handled_like_downtime(store, folder):
    write(folder, scheduled("hourly", {"interval_minutes": 60}, sleep_step(0)))
    due_at(store, folder, "2026-12-01T10:05")
    # the machine slept and woke up two days later: one run, for the newest slot
    assert due_at(store, folder, "2026-12-03T09:59") == [("2026-12-03T09:00:00+00:00", "SUCCESS", None)]


def test_a_slot_is_claimed_once_and_a_second_claim_loses(store):
    assert store.claim_slot("p", "2026-12-01T10:00:00+00:00", "run-a") == "run"
    assert store.claim_slot("p", "2026-12-01T10:00:00+00:00", "run-b") is None
    # the first claim is still CLAIMED by this live process: a new slot overlaps it
    assert store.claim_slot("p", "2026-12-01T11:00:00+00:00", "run-c") == "overlap"
    assert slots(store) == [
        ("2026-12-01T10:00:00+00:00", "CLAIMED", None),
        ("2026-12-01T11:00:00+00:00", "SKIPPED", "overlap"),
    ]
    assert store.claim_slot("other", "2026-12-01T11:00:00+00:00", "run-d") == "run"  # per policy


def test_two_claims_of_different_slots_of_one_policy_at_once_never_both_run(store, db_url):
    """Two schedulers claiming two slots of one policy at the same moment: one runs, the other
    is an overlap (on PostgreSQL too, where a claim does not lock the whole database)."""
    import threading

    other = Store(store.state_dir, db_url)
    got: dict[str, str | None] = {}

    def claim(s: Store, barrier: threading.Barrier, policy_id: str, slot: str) -> None:
        barrier.wait()
        got[slot] = s.claim_slot(policy_id, slot, f"run-{policy_id}-{slot}")

    try:
        for i in range(15):
            got.clear()
            barrier = threading.Barrier(2)
            threads = [
                threading.Thread(target=claim, args=(s, barrier, f"p{i}", f"2026-12-01T{hour}:00:00+00:00"))
                for s, hour in ((store, 10), (other, 11))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(got.values(), key=str) == ["overlap", "run"], (i, got)
    finally:
        other.close()


def test_a_claim_whose_process_died_before_the_run_started_is_released(store, folder):
    write(folder, scheduled("hourly", {"interval_minutes": 60}, sleep_step(0)))
    store.claim_slot("hourly", "2026-12-01T10:00:00+00:00", "never-started")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pg.execute(store.state_dir, ("update schedule_slots set pid = ?", (int(dead.stdout),)))
    assert due_at(store, folder, "2026-12-01T10:10") == [("2026-12-01T10:00:00+00:00", "SUCCESS", None)]


def test_retention_is_applied_after_each_scheduled_run(store, folder):
    doc = scheduled("hourly", {"interval_minutes": 60}, sleep_step(0), retention={"keep_latest_n_runs": 1})
    write(folder, doc)
    due_at(store, folder, "2026-12-01T10:05")
    due_at(store, folder, "2026-12-01T11:05")
    [remaining] = store.list_runs(limit=None)
    assert remaining["scheduled_for"] == "2026-12-01T11:00:00+00:00"
    assert [s["scheduled_for"] for s in store.list_slots()] == [
        "2026-12-01T10:00:00+00:00",
        "2026-12-01T11:00:00+00:00",
    ]
