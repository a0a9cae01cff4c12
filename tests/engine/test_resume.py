"""engine.api.resume_run: continue a FAILED, PARTIAL or CANCELLED run under the same id (issue #3 §9, §7)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.api import resume_run, run_policy
from engine.errors import ResumeError, UsageError
from engine.store import Store
from tests import pg
from tests.conftest import policy
from tests.stepkit import Concurrency

sql = pg.sql  # the state database of the test (SQLite or PostgreSQL), through a connection of its own


def counter(tmp_path: Path, name: str) -> int:
    path = tmp_path / name
    return int(path.read_text()) if path.exists() else 0


def counted(sid: str, tmp_path: Path, fail_times: int = 0, **extra: Any) -> dict[str, Any]:
    """A step that counts its runs in ``tmp_path/sid`` and fails the first ``fail_times`` of them."""
    return {
        "id": sid,
        "type": "test.flaky",
        "params": {"counter_file": str(tmp_path / sid), "fail_times": fail_times},
        **extra,
    }


def outputs(store: Store, run_id: str) -> dict[str, Any]:
    return {s["step_id"]: json.loads(s["output_json"]) if s["output_json"] else None for s in store.get_steps(run_id)}


def statuses(result) -> dict[str, str]:
    return {s.id: s.status for s in result.steps}


def test_resume_keeps_success_outputs_dataframes_included_without_rerunning(run, resume, store, state_dir, tmp_path):
    effect_file = tmp_path / "effect.txt"
    doc = policy(
        {"id": "frame", "type": "test.frame", "params": {"rows": 4}},
        {"id": "effect", "type": "test.effect", "params": {"path": str(effect_file)}, "depends_on": ["frame"]},
        counted("gate", tmp_path, fail_times=1, depends_on=["effect"]),
        {
            "id": "stats",
            "type": "test.frame_stats",
            "params": {"frame": {"ref": "ctx.frame.frame"}},
            "depends_on": ["gate"],
        },
        {"id": "rows", "type": "core.value", "params": {"value": {"ref": "ctx.frame.rows"}}, "depends_on": ["gate"]},
    )
    first = run(doc)
    assert (first.status, first.attempt) == ("FAILED", 1)
    assert statuses(first) == {
        "frame": "SUCCESS",
        "effect": "SUCCESS",
        "gate": "FAILED",
        "stats": "PENDING",
        "rows": "PENDING",
    }
    frame_output = outputs(store, first.run_id)["frame"]

    second = resume(first.run_id)
    assert (second.run_id, second.status, second.attempt) == (first.run_id, "SUCCESS", 2)
    assert effect_file.read_text() == "done\n"  # the side effect happened once
    assert counter(tmp_path, "gate") == 2
    assert outputs(store, first.run_id)["stats"] == {"type": "DataFrame", "rows": 4, "sq_sum": 14}
    assert outputs(store, first.run_id)["rows"] == 4
    assert outputs(store, first.run_id)["frame"] == frame_output  # {"frame": {"$frame": sha}, "rows": 4}
    assert set(frame_output["frame"]) == {"$frame"}
    assert sql(state_dir, "SELECT step_id, run_attempt, attempt, status FROM step_attempts ORDER BY id") == [
        ("frame", 1, 1, "SUCCESS"),
        ("effect", 1, 1, "SUCCESS"),
        ("gate", 1, 1, "FAILED"),
        ("gate", 2, 1, "SUCCESS"),
        ("stats", 2, 1, "SUCCESS"),
        ("rows", 2, 1, "SUCCESS"),
    ]
    assert dict(sql(state_dir, "SELECT step_id, run_attempt FROM step_runs")) == {
        "frame": 1,
        "effect": 1,
        "gate": 2,
        "stats": 2,
        "rows": 2,
    }


def test_resume_reruns_failed_and_upstream_skipped_steps_keeps_skip_if_skips(run, resume, tmp_path):
    doc = policy(
        counted("flaky", tmp_path, fail_times=1, on_error="log_and_continue"),
        counted("child", tmp_path, depends_on=["flaky"]),
        counted("grandchild", tmp_path, depends_on=["child"]),
        counted("independent", tmp_path),
        counted("skipped", tmp_path, skip_if=True),
        counted("after_skipped", tmp_path, depends_on=["skipped"]),
    )
    first = run(doc)
    assert first.status == "PARTIAL"
    assert [(s.id, s.status, s.skip_reason) for s in first.steps] == [
        ("flaky", "FAILED", None),
        ("child", "SKIPPED", "upstream 'flaky' failed"),
        ("grandchild", "SKIPPED", "upstream 'child' was skipped"),
        ("independent", "SUCCESS", None),
        ("skipped", "SKIPPED", "skip_if: condition is true"),
        ("after_skipped", "SKIPPED", "upstream 'skipped' was skipped"),
    ]
    second = resume(first.run_id)
    assert (second.status, second.attempt) == ("SUCCESS", 2)
    assert [(s.id, s.status, s.skip_reason) for s in second.steps] == [
        ("flaky", "SUCCESS", None),
        ("child", "SUCCESS", None),
        ("grandchild", "SUCCESS", None),
        ("independent", "SUCCESS", None),
        ("skipped", "SKIPPED", "skip_if: condition is true"),
        ("after_skipped", "SKIPPED", "upstream 'skipped' was skipped"),
    ]
    runs_of = {sid: counter(tmp_path, sid) for sid in ("flaky", "child", "grandchild", "independent", "skipped")}
    assert runs_of == {"flaky": 2, "child": 1, "grandchild": 1, "independent": 1, "skipped": 0}


def test_resume_reruns_pending_steps_of_a_fail_pipeline_run(run, resume, tmp_path):
    doc = policy(
        counted("a", tmp_path, fail_times=1),
        counted("b", tmp_path, depends_on=["a"]),
        counted("c", tmp_path),
        max_concurrency=1,
    )
    first = run(doc)
    assert statuses(first) == {"a": "FAILED", "b": "PENDING", "c": "PENDING"}
    second = resume(first.run_id)
    assert statuses(second) == {"a": "SUCCESS", "b": "SUCCESS", "c": "SUCCESS"}
    assert [counter(tmp_path, s) for s in "abc"] == [2, 1, 1]


def test_resume_attempt_increments_and_ctx_run_attempt_follows(run, resume, store, state_dir, tmp_path):
    doc = policy(
        counted("flaky", tmp_path, fail_times=2),
        {"id": "which", "type": "core.value", "params": {"value": {"ref": "ctx.run.attempt"}}, "depends_on": ["flaky"]},
    )
    first = run(doc)
    second = resume(first.run_id)
    third = resume(first.run_id)
    assert [(r.status, r.attempt) for r in (first, second, third)] == [("FAILED", 1), ("FAILED", 2), ("SUCCESS", 3)]
    assert outputs(store, first.run_id)["which"] == 3
    assert sql(
        state_dir, "SELECT run_attempt, attempt, status, error FROM step_attempts WHERE step_id = 'flaky' ORDER BY id"
    ) == [(1, 1, "FAILED", "flaky failure 1"), (2, 1, "FAILED", "flaky failure 2"), (3, 1, "SUCCESS", None)]
    assert sql(state_dir, "SELECT count(*), max(attempt) FROM runs") == [(1, 3)]


def test_resume_without_policy_uses_the_stored_snapshot(run, resume, write_policy, tmp_path):
    doc = policy({"id": "a", "type": "test.fail", "params": {"message": "still broken"}})
    first = run(doc)
    write_policy(policy({"id": "a", "type": "core.value"}))  # the file is fixed, but not passed to resume
    second = resume(first.run_id)
    assert (second.status, second.steps[0].error) == ("FAILED", "still broken")


def test_resume_with_a_changed_policy_reruns_changed_steps_and_their_downstream(
    run, resume, write_policy, tmp_path, store
):
    def steps(fixed: bool) -> list[dict[str, Any]]:
        return [
            counted("a", tmp_path),
            counted("b", tmp_path, depends_on=["a"], **({"description": "changed"} if fixed else {})),
            counted("after_b", tmp_path, depends_on=["b"]),
            counted("c", tmp_path),
            {"id": "broken", "type": "core.value", "depends_on": ["c"], "params": {"value": "fixed"}}
            if fixed
            else {"id": "broken", "type": "test.fail", "depends_on": ["c"], "on_error": "log_and_continue"},
        ]

    first = run(policy(*steps(fixed=False)))
    assert first.status == "PARTIAL"
    second = resume(first.run_id, policy_path=write_policy(policy(*steps(fixed=True)), "fixed.json"))
    assert (second.status, second.attempt) == ("SUCCESS", 2)
    assert {s: counter(tmp_path, s) for s in ("a", "b", "after_b", "c")} == {"a": 1, "b": 2, "after_b": 2, "c": 1}
    assert outputs(store, first.run_id)["broken"] == "fixed"


def test_resume_with_a_policy_that_adds_and_removes_steps(run, resume, write_policy, tmp_path, state_dir):
    first = run(
        policy(
            counted("keep", tmp_path),
            counted("old", tmp_path),
            {"id": "bad", "type": "test.fail", "depends_on": ["keep"]},
        )
    )
    fixed = policy(
        counted("new", tmp_path),
        counted("keep", tmp_path),
        {"id": "bad", "type": "core.value", "depends_on": ["keep", "new"]},
    )
    second = resume(first.run_id, policy_path=write_policy(fixed, "fixed.json"))
    assert second.status == "SUCCESS"
    assert [(s.id, s.status) for s in second.steps] == [("new", "SUCCESS"), ("keep", "SUCCESS"), ("bad", "SUCCESS")]
    assert counter(tmp_path, "keep") == 1
    (snapshot,) = sql(state_dir, "SELECT policy_json FROM runs")[0]
    assert json.loads(snapshot) == fixed


def test_a_success_step_with_side_effects_is_never_rerun(run, resume, write_policy, tmp_path):
    effect_file = tmp_path / "sent.txt"

    def doc(line: str, upstream_description: str, gate_fails: bool) -> dict[str, Any]:
        return policy(
            counted("upstream", tmp_path, description=upstream_description),
            {
                "id": "send",
                "type": "test.effect",
                "params": {"path": str(effect_file), "line": line},
                "depends_on": ["upstream"],
            },
            {"id": "gate", "type": "test.fail" if gate_fails else "core.value", "depends_on": ["send"]},
        )

    first = run(doc("first", "v1", gate_fails=True))
    assert first.status == "FAILED"
    # both the side-effect step and its upstream changed: upstream runs again, the send does not
    second = resume(first.run_id, policy_path=write_policy(doc("second", "v2", gate_fails=False), "fixed.json"))
    assert second.status == "SUCCESS"
    assert effect_file.read_text() == "first\n"
    assert counter(tmp_path, "upstream") == 2


def test_resuming_a_successful_run_is_an_error(run, resume):
    first = run(policy({"id": "a", "type": "core.value"}))
    with pytest.raises(ResumeError) as info:
        resume(first.run_id)
    assert str(info.value) == (
        f"run {first.run_id} already succeeded: nothing to resume (start a new run with 'engine run')"
    )
    assert info.value.exit_code == 2


def test_resume_with_a_policy_of_another_id_is_an_error(run, resume, write_policy):
    first = run(policy({"id": "a", "type": "test.fail"}))
    other = write_policy(policy({"id": "a", "type": "core.value"}, id="other"), "other.json")
    with pytest.raises(ResumeError) as info:
        resume(first.run_id, policy_path=other)
    assert str(info.value) == f"{other}: policy id 'other' does not match run {first.run_id}'s policy 'test'"


def test_resume_unknown_run_is_a_usage_error(resume, store):
    with pytest.raises(UsageError) as info:
        resume("20990101T000000-abcdef")
    assert str(info.value) == (f"no run '20990101T000000-abcdef' in {store.state_dir} (list runs with 'engine runs')")


def test_resume_accepts_a_unique_run_id_prefix(run, resume, tmp_path):
    """``engine show`` and ``require_run`` accept a unique prefix of a run id; resume goes through the same lookup."""
    first = run(policy(counted("a", tmp_path, fail_times=1)))
    assert resume(first.run_id[:-2]).run_id == first.run_id


def test_resume_of_a_running_run_is_refused(run, store, resume):
    first = run(policy({"id": "a", "type": "test.fail"}))
    store.update_run(first.run_id, status="RUNNING")  # this very process: alive
    with pytest.raises(ResumeError, match=rf"run {first.run_id} is still running \(pid \d+ on .+\); wait for it"):
        resume(first.run_id)


def test_resume_of_a_cancelled_run(store, write_policy, resume, tmp_path):
    doc = policy(
        counted("done", tmp_path),
        {"id": "slow", "type": "test.sleep", "params": {"seconds": 10}, "depends_on": ["done"]},
    )

    def cancel_soon(runner):
        asyncio.get_running_loop().call_later(0.2, runner.cancel, "cancelled by test")

    first = asyncio.run(run_policy(write_policy(doc), store=store, on_runner=cancel_soon))
    assert first.status == "CANCELLED"
    fixed = policy(counted("done", tmp_path), {"id": "slow", "type": "test.sleep", "depends_on": ["done"]})
    second = resume(first.run_id, policy_path=write_policy(fixed, "fixed.json"))
    assert (second.status, second.attempt) == ("SUCCESS", 2)
    assert counter(tmp_path, "done") == 1


def test_on_failure_steps_run_again_when_a_resumed_run_fails_again(run, resume, store, tmp_path):
    doc = policy(
        counted("flaky", tmp_path, fail_times=2),
        on_failure=[{"id": "alert", "type": "core.value", "params": {"value": {"ref": "ctx.run.attempt"}}}],
    )
    first = run(doc)
    assert outputs(store, first.run_id)["alert"] == 1
    second = resume(first.run_id)
    assert (second.status, statuses(second)["alert"]) == ("FAILED", "SUCCESS")
    assert outputs(store, first.run_id)["alert"] == 2
    third = resume(first.run_id)
    assert third.status == "SUCCESS"
    assert [(s.id, s.status, s.skip_reason) for s in third.steps] == [
        ("flaky", "SUCCESS", None),
        ("alert", "SKIPPED", "on_failure: the run did not fail"),
    ]


# -- interrupted runs ----------------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_left_running_by_a_dead_process_is_marked_interrupted_then_resumable(
    run, resume, store, state_dir, tmp_path
):
    first = run(
        policy(
            counted("done", tmp_path),
            counted("was_running", tmp_path, depends_on=["done"]),
            counted("never_started", tmp_path, depends_on=["was_running"]),
        )
    )
    assert first.status == "SUCCESS"
    # fake what a killed engine leaves behind: the run and one step RUNNING, the rest untouched
    pg.execute(
        state_dir,
        ("UPDATE runs SET status = 'RUNNING', finished_at = NULL, pid = ?", (dead_pid(),)),
        "UPDATE step_runs SET status = 'RUNNING', finished_at = NULL WHERE step_id = 'was_running'",
        "UPDATE step_runs SET status = 'PENDING', output_json = NULL, finished_at = NULL, "
        "started_at = NULL WHERE step_id = 'never_started'",
    )

    assert store.mark_interrupted() == [first.run_id]
    assert sql(state_dir, "SELECT status, error, finished_at IS NOT NULL FROM runs") == [
        ("FAILED", "interrupted: the engine process stopped", 1)
    ]
    assert sql(state_dir, "SELECT step_id, status, error FROM step_runs ORDER BY position") == [
        ("done", "SUCCESS", None),
        ("was_running", "FAILED", "interrupted: the engine process stopped"),
        ("never_started", "PENDING", None),
    ]
    assert store.mark_interrupted() == []  # idempotent

    second = resume(first.run_id)
    assert (second.status, second.attempt) == ("SUCCESS", 2)
    assert [counter(tmp_path, s) for s in ("done", "was_running", "never_started")] == [1, 2, 2]


def test_resume_itself_marks_interrupted_runs_first(run, resume, state_dir, tmp_path):
    first = run(policy(counted("a", tmp_path)))
    pg.execute(
        state_dir,
        ("UPDATE runs SET status = 'RUNNING', pid = ?", (dead_pid(),)),
        "UPDATE step_runs SET status = 'RUNNING'",
    )
    assert resume(first.run_id).status == "SUCCESS"
    assert counter(tmp_path, "a") == 2


@pytest.mark.parametrize(
    ("pid", "host", "marked"),
    [
        pytest.param("dead", "here", True, id="dead-pid-this-host"),
        pytest.param("alive", "here", False, id="live-pid"),
        pytest.param("self", "here", False, id="this-process"),
        pytest.param("dead", "elsewhere.example", False, id="other-host"),
        pytest.param(None, "here", False, id="no-pid"),
    ],
)
def test_mark_interrupted_only_touches_dead_processes_on_this_host(run, store, state_dir, pid, host, marked):
    first = run(policy({"id": "a", "type": "core.value"}))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        value = {"dead": dead_pid(), "alive": live.pid, "self": os.getpid(), None: None}[pid]
        store.update_run(
            first.run_id, status="RUNNING", pid=value, host=socket.gethostname() if host == "here" else host
        )
        assert store.mark_interrupted() == ([first.run_id] if marked else [])
        assert store.get_run(first.run_id)["status"] == ("FAILED" if marked else "RUNNING")
    finally:
        live.kill()
        live.wait()


def test_resume_api_is_the_same_as_the_fixture(store, write_policy, tmp_path):
    """resume_run works on a Store it did not create the run with (another process, another day)."""
    first = asyncio.run(run_policy(write_policy(policy(counted("a", tmp_path, fail_times=1))), store=store))
    other = Store(store.state_dir, os.environ.get("ENGINE_DB_URL"))
    try:
        again = asyncio.run(resume_run(first.run_id, store=other))
    finally:
        other.close()
    assert (again.status, again.attempt) == ("SUCCESS", 2)
    assert Concurrency.order == []


def test_a_skip_if_skip_is_reevaluated_when_its_upstream_runs_again(run, resume, tmp_path):
    doc = policy(
        counted("up", tmp_path, fail_times=1, on_error="log_and_continue"),
        counted("gate", tmp_path, trigger_rule="all_done", skip_if={"ref": "ctx.up", "op": "is_empty"}),
    )
    first = run(doc)
    assert [(s.id, s.status, s.skip_reason) for s in first.steps] == [
        ("up", "FAILED", None),
        ("gate", "SKIPPED", "skip_if: condition is true"),
    ]
    second = resume(first.run_id)
    assert [(s.id, s.status) for s in second.steps] == [("up", "SUCCESS"), ("gate", "SUCCESS")]
    assert counter(tmp_path, "gate") == 1


def test_resume_attempt_is_what_steps_see(run, resume, store, tmp_path):
    doc = policy(counted("gate", tmp_path, fail_times=1), {"id": "a", "type": "test.attempt", "depends_on": ["gate"]})
    first = run(doc)
    resume(first.run_id)
    assert outputs(store, first.run_id)["a"] == {"attempt": 1, "run_attempt": 2}


def test_resume_with_a_policy_that_declares_a_new_param_uses_its_default(run, resume, write_policy, store):
    first = run(policy({"id": "a", "type": "test.fail"}))
    fixed = policy(
        {"id": "a", "type": "core.value", "params": {"value": {"ref": "ctx.params.region"}}},
        params={"region": {"type": "string", "default": "eu"}},
    )
    second = resume(first.run_id, policy_path=write_policy(fixed, "fixed.json"))
    assert (second.status, second.steps[0].error) == ("SUCCESS", None)
    assert outputs(store, first.run_id)["a"] == "eu"


def test_a_resumed_run_keeps_its_trigger_and_is_found_as_resumed(run, resume, store, write_policy):
    failed = run(policy({"id": "a", "type": "test.fail", "params": {}}))
    assert (failed.trigger, failed.status) == ("api", "FAILED")  # engine.api from Python
    fixed = write_policy(policy({"id": "a", "type": "core.value", "params": {"value": 1}}), "fixed.json")
    resumed = resume(failed.run_id, policy_path=fixed)
    assert (resumed.trigger, resumed.attempt, resumed.status) == ("api", 2, "SUCCESS")
    assert [r["id"] for r in store.list_runs(trigger="api")] == [failed.run_id]
    assert [r["id"] for r in store.list_runs(trigger="resume")] == [failed.run_id]


def test_the_runner_writes_every_column_it_changes_across_resumes(run, resume, store, tmp_path):
    """The runner writes only the columns that changed; its copy of each row must match the store."""
    from engine.store import STEP_STATE_COLUMNS

    doc = policy(
        counted("flaky", tmp_path, fail_times=5, retry={"max_attempts": 2, "backoff_s": 0.01}),
        counted("after", tmp_path, depends_on=["flaky"]),
        counted("skipped", tmp_path, skip_if=True),
        counted("alone", tmp_path, fail_times=1, on_error="log_and_continue"),
    )
    runners: list[Any] = []
    first = run(doc, on_runner=runners.append)
    second = resume(first.run_id, on_runner=runners.append)
    third = resume(first.run_id, on_runner=runners.append)
    assert [r.status for r in (first, second, third)] == ["FAILED", "FAILED", "SUCCESS"]
    for runner in runners:  # each runner's copy, as it left it, against the store at its end
        stored = store.step_states(first.run_id) if runner is runners[-1] else None
        for sid, record in runner.records.items():
            values = tuple(getattr(record, name) for name in STEP_STATE_COLUMNS)
            assert record.stored == values, sid
            if stored is not None:
                assert stored[sid] == values, sid
    rows = {s["step_id"]: s for s in store.get_steps(first.run_id)}
    assert {sid: (r["status"], r["attempts"], r["run_attempt"], r["error"]) for sid, r in rows.items()} == {
        "flaky": ("SUCCESS", 2, 3, None),
        "after": ("SUCCESS", 1, 3, None),
        "skipped": ("SKIPPED", 0, 1, None),
        "alone": ("SUCCESS", 1, 2, None),
    }
