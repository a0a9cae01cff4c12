"""engine.runner: the async state machine (issue #3 §6), its committed state (§7) and secret redaction (§2)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.api import run_policy
from engine.policy import Retry
from engine.runner import StepEvent, backoff_delay
from engine.states import StepState
from tests import pg
from tests.conftest import ROOT, policy
from tests.stepkit import Concurrency


def sql(state_dir: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the run state with a plain DBAPI connection, as any other process would (sqlite3 on
    engine.db, or psycopg on the test's PostgreSQL database)."""
    return pg.sql(state_dir, query, *args)


def times(state_dir: Path, run_id: str) -> dict[str, tuple[str, str]]:
    rows = sql(state_dir, "SELECT step_id, started_at, finished_at FROM step_runs WHERE run_id = ?", run_id)
    return {sid: (start, end) for sid, start, end in rows}


def sleep(sid: str, seconds: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "type": "test.sleep", "params": {"seconds": seconds, "value": sid}, **extra}


def statuses(result) -> dict[str, str]:
    return {s.id: s.status for s in result.steps}


# -- concurrency and order -------------------------------------------------------------------------


def test_parallel_branches_really_overlap(run, state_dir):
    doc = policy(sleep("a", 0.3), sleep("b", 0.3), sleep("c", 0.3), sleep("join", 0, depends_on=["a", "b", "c"]))
    started = time.monotonic()
    result = run(doc)
    wall = time.monotonic() - started
    assert result.status == "SUCCESS"
    # one after another they would take 0.9 s of sleeping alone (the spans below are the proof; the
    # wall time bounds the rest: recording the run, which on PostgreSQL is a round trip per write)
    assert wall < 0.9, f"three 0.3 s branches took {wall:.2f} s: they did not overlap"
    spans = times(state_dir, result.run_id)
    assert max(spans[s][0] for s in "abc") < min(spans[s][1] for s in "abc")  # all started before any finished
    assert spans["join"][0] >= max(spans[s][1] for s in "abc")


@pytest.mark.parametrize("max_concurrency", [1, 2, 3])
def test_max_concurrency_is_never_exceeded_and_is_used(run, max_concurrency):
    doc = policy(*[sleep(f"s{i}", 0.03) for i in range(7)], max_concurrency=max_concurrency)
    assert run(doc).status == "SUCCESS"
    assert Concurrency.peak == max_concurrency


def test_default_max_concurrency_is_4(run):
    assert run(policy(*[sleep(f"s{i}", 0.03) for i in range(6)])).status == "SUCCESS"
    assert Concurrency.peak == 4


def test_ready_steps_start_in_policy_order(run):
    doc = policy(
        sleep("r"),
        sleep("z", depends_on=["r"]),
        sleep("y", depends_on=["r"]),
        sleep("x", depends_on=["r"]),
        sleep("w"),
        max_concurrency=1,
    )
    run(doc)
    first = list(Concurrency.order)
    # w was ready from the start, but z, y and x come before it in the policy
    assert first == ["r", "z", "y", "x", "w"]
    Concurrency.reset()
    run(doc)
    assert Concurrency.order == first  # reproducible


def test_independent_steps_start_in_policy_order(run):
    run(policy(sleep("c"), sleep("a"), sleep("d"), sleep("b"), max_concurrency=1))
    assert Concurrency.order == ["c", "a", "d", "b"]


def test_step_starts_as_soon_as_its_own_dependencies_finish(run, state_dir):
    """Not layer by layer: b follows a while the slow step of a's layer is still running."""
    doc = policy(sleep("a", 0.02), sleep("slow", 0.4), sleep("b", 0.02, depends_on=["a"]))
    result = run(doc)
    spans = times(state_dir, result.run_id)
    assert spans["b"][0] >= spans["a"][1]
    assert spans["b"][1] < spans["slow"][1]


def test_sync_run_goes_to_a_thread_and_does_not_block_the_loop(run):
    doc = policy(
        {"id": "s1", "type": "test.sync_sleep", "params": {"seconds": 0.3}},
        {"id": "s2", "type": "test.sync_sleep", "params": {"seconds": 0.3}},
        sleep("a", 0.3),
    )
    started = time.monotonic()
    result = run(doc)
    wall = time.monotonic() - started
    assert result.status == "SUCCESS"
    assert wall < 0.75, f"two sync sleeps and one async sleep of 0.3 s took {wall:.2f} s"


# -- skips ------------------------------------------------------------------------------------------


def test_skip_if_true_skips_and_all_success_dependents_are_skipped_with_the_reason(run):
    doc = policy(
        sleep("a", skip_if={"ref": "ctx.params.off", "op": "eq", "value": True}),
        sleep("b", depends_on=["a"]),
        sleep("c", depends_on=["b"]),
        sleep("d", depends_on=["a"], trigger_rule="all_done"),
        sleep("e", skip_if=False),
        params={"off": {"type": "boolean", "default": True}},
    )
    result = run(doc)
    assert result.status == "SUCCESS"
    assert [(s.id, s.status, s.skip_reason, s.attempts) for s in result.steps] == [
        ("a", "SKIPPED", "skip_if: condition is true", 0),
        ("b", "SKIPPED", "upstream 'a' was skipped", 0),
        ("c", "SKIPPED", "upstream 'b' was skipped", 0),
        ("d", "SUCCESS", None, 1),
        ("e", "SUCCESS", None, 1),
    ]
    assert Concurrency.order == ["e", "d"]  # a and e started together; d followed a's skip


def test_skip_if_false_runs(run):
    result = run(
        policy(
            sleep("a", skip_if={"ref": "ctx.params.off", "op": "eq", "value": True}),
            params={"off": {"type": "boolean", "default": True}},
        ),
        param_strings={"off": "false"},
    )
    assert statuses(result) == {"a": "SUCCESS"}


def test_all_success_step_after_a_failed_step_is_skipped_all_done_step_runs(run):
    doc = policy(
        {"id": "bad", "type": "test.fail", "on_error": "log_and_continue"},
        sleep("ok"),
        sleep("strict", depends_on=["bad", "ok"]),
        {
            "id": "lenient",
            "type": "core.value",
            "trigger_rule": "all_done",
            "depends_on": ["bad", "ok"],
            "params": {"value": [{"ref": "ctx.bad"}, {"ref": "ctx.ok"}]},
        },
    )
    result = run(doc)
    assert result.status == "PARTIAL"
    assert [(s.id, s.status, s.skip_reason) for s in result.steps] == [
        ("bad", "FAILED", None),
        ("ok", "SUCCESS", None),
        ("strict", "SKIPPED", "upstream 'bad' failed"),
        ("lenient", "SUCCESS", None),
    ]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param({}, id="built-in-default"),
        pytest.param({"on_error": "fail_pipeline"}, id="explicit"),
        pytest.param({"defaults": {"on_error": "fail_pipeline"}}, id="from-defaults"),
    ],
)
def test_fail_pipeline(run, setting):
    step_setting = {k: v for k, v in setting.items() if k == "on_error"}
    top = {k: v for k, v in setting.items() if k == "defaults"}
    doc = policy(
        {"id": "a", "type": "test.fail", "params": {"message": "boom"}, **step_setting},
        sleep("running", 0.2),
        sleep("after_a", depends_on=["a"]),
        sleep("after_running", depends_on=["running"]),
        sleep("queued"),
        max_concurrency=2,
        **top,
    )
    result = run(doc)
    assert result.status == "FAILED"
    assert result.error == "step 'a' failed: boom"
    assert statuses(result) == {
        "a": "FAILED",
        "running": "SUCCESS",
        "after_a": "PENDING",
        "after_running": "PENDING",
        "queued": "PENDING",
    }
    assert Concurrency.order == ["running"]  # no new step started after the failure


def test_log_and_continue_makes_the_run_partial(run):
    doc = policy(
        {"id": "a", "type": "test.fail", "on_error": "log_and_continue"},
        sleep("b"),
        sleep("after_a", depends_on=["a"]),
        sleep("after_b", depends_on=["b"]),
    )
    result = run(doc)
    assert (result.status, result.error) == ("PARTIAL", None)
    assert statuses(result) == {"a": "FAILED", "b": "SUCCESS", "after_a": "SKIPPED", "after_b": "SUCCESS"}


def test_defaults_on_error_applies_to_steps_without_their_own(run):
    doc = policy(
        {"id": "a", "type": "test.fail"},
        {"id": "b", "type": "test.fail", "on_error": "fail_pipeline"},
        sleep("c", depends_on=["a"]),
        defaults={"on_error": "log_and_continue"},
        max_concurrency=1,
    )
    result = run(doc)
    assert result.status == "FAILED"
    # a failed and the run went on: c was skipped; then b failed and stopped the run
    assert [(s.id, s.status, s.skip_reason) for s in result.steps] == [
        ("a", "FAILED", None),
        ("b", "FAILED", None),
        ("c", "SKIPPED", "upstream 'a' failed"),
    ]


def attempts(state_dir: Path, run_id: str, step_id: str) -> list[tuple[int, int, str, str | None]]:
    return sql(
        state_dir,
        "SELECT run_attempt, attempt, status, error FROM step_attempts WHERE run_id = ? AND step_id = ? ORDER BY id",
        run_id,
        step_id,
    )


def test_retry_then_fail_succeeds_within_max_attempts(run, state_dir, tmp_path):
    doc = policy(
        {
            "id": "f",
            "type": "test.flaky",
            "params": {"counter_file": str(tmp_path / "n"), "fail_times": 2},
            "on_error": "retry_then_fail",
            "retry": {"max_attempts": 3, "backoff_s": 0.01},
        }
    )
    result = run(doc)
    assert result.status == "SUCCESS"
    assert (result.steps[0].attempts, result.steps[0].error) == (3, None)
    assert attempts(state_dir, result.run_id, "f") == [
        (1, 1, "FAILED", "flaky failure 1"),
        (1, 2, "FAILED", "flaky failure 2"),
        (1, 3, "SUCCESS", None),
    ]


def test_retry_then_fail_gives_up_after_max_attempts_then_acts_as_fail_pipeline(run, state_dir, tmp_path):
    doc = policy(
        {
            "id": "f",
            "type": "test.flaky",
            "params": {"counter_file": str(tmp_path / "n"), "fail_times": 9},
            "on_error": "retry_then_fail",
            "retry": {"max_attempts": 2, "backoff_s": 0.01},
        },
        sleep("after", depends_on=["f"]),
    )
    result = run(doc)
    assert (result.status, result.error) == ("FAILED", "step 'f' failed: flaky failure 2")
    assert statuses(result) == {"f": "FAILED", "after": "PENDING"}
    assert result.steps[0].attempts == 2
    assert attempts(state_dir, result.run_id, "f") == [
        (1, 1, "FAILED", "flaky failure 1"),
        (1, 2, "FAILED", "flaky failure 2"),
    ]
    assert (tmp_path / "n").read_text() == "2"


def test_retry_settings_merge_defaults_and_step(run, tmp_path):
    doc = policy(
        {
            "id": "f",
            "type": "test.flaky",
            "params": {"counter_file": str(tmp_path / "n"), "fail_times": 9},
            "retry": {"max_attempts": 4},
        },
        defaults={"on_error": "retry_then_fail", "retry": {"max_attempts": 2, "backoff_s": 0.01}},
    )
    result = run(doc)
    assert result.steps[0].attempts == 4
    assert (tmp_path / "n").read_text() == "4"


def test_retry_backoff_is_exponential(run, state_dir, tmp_path):
    doc = policy(
        {
            "id": "f",
            "type": "test.flaky",
            "params": {"counter_file": str(tmp_path / "n"), "fail_times": 2},
            "on_error": "retry_then_fail",
            "retry": {"max_attempts": 3, "backoff_s": 0.1, "jitter": False},
        }
    )
    result = run(doc)
    rows = sql(
        state_dir, "SELECT started_at, finished_at FROM step_attempts WHERE run_id = ? ORDER BY id", result.run_id
    )
    from datetime import datetime

    gaps = [
        (datetime.fromisoformat(rows[i + 1][0]) - datetime.fromisoformat(rows[i][1])).total_seconds() for i in range(2)
    ]
    assert 0.1 <= gaps[0] < 0.2  # backoff_s
    assert 0.2 <= gaps[1] < 0.4  # doubled
    assert gaps[1] > gaps[0]


@pytest.mark.parametrize(
    ("retry", "attempt", "expected"),
    [
        pytest.param(Retry(backoff_s=1, jitter=False), 1, 1, id="first"),
        pytest.param(Retry(backoff_s=1, jitter=False), 2, 2, id="doubles"),
        pytest.param(Retry(backoff_s=1, jitter=False), 4, 8, id="doubles-again"),
        pytest.param(Retry(backoff_s=1, max_backoff_s=5, jitter=False), 4, 5, id="capped"),
        pytest.param(Retry(backoff_s=0, jitter=False), 3, 0, id="zero"),
    ],
)
def test_backoff_delay_without_jitter(retry, attempt, expected):
    assert backoff_delay(retry, attempt) == expected


def test_backoff_delay_full_jitter_stays_between_zero_and_the_delay():
    retry = Retry(backoff_s=1, max_backoff_s=3)
    delays = [backoff_delay(retry, 3) for _ in range(300)]
    assert all(0 <= d <= 3 for d in delays)
    assert len(set(delays)) > 200  # random, not a constant
    assert min(delays) < 1 and max(delays) > 2


def test_retry_defaults():
    assert Retry() == Retry(max_attempts=3, backoff_s=1, max_backoff_s=60, jitter=True)


@pytest.mark.parametrize(
    ("step", "error"),
    [
        pytest.param(
            {"type": "test.flaky", "params": {"counter_file": "COUNTER", "fail_times": 5, "retryable": False}},
            "flaky failure 1",
            id="step-says-not-retryable",
        ),
        pytest.param(
            {"type": "test.fail", "params": {"retryable": False, "message": "bad input"}},
            "bad input",
            id="fail-not-retryable",
        ),
        pytest.param(
            {"type": "core.value", "params": {"value": {"ref": "ctx.params.cfg.missing"}}},
            "ref ctx.params.cfg.missing at /steps/0/params/value not found: ctx.params.cfg has no 'missing' "
            "(it has: nothing)",
            id="ref-error",
        ),
        pytest.param(
            {"type": "test.typed", "params": {"count": {"template": "many {{ params.cfg }}"}}},
            "invalid params after resolving values: /steps/0/params/count: Input should be a valid integer, "
            "unable to parse string as an integer (got 'many {}')",
            id="params-invalid-after-resolving",
        ),
        pytest.param(
            {"type": "test.bad_typed"},
            "step type 'test.bad_typed' returned an output that does not match "
            "its Output model: count: Input should be a valid integer, unable to parse string as an integer",
            id="output-does-not-match",
        ),
    ],
)
def test_non_retryable_errors_are_not_retried(run, state_dir, tmp_path, step, error):
    raw = json.loads(json.dumps(step).replace("COUNTER", str(tmp_path / "n")))
    doc = policy(
        {"id": "s", **raw, "on_error": "retry_then_fail", "retry": {"max_attempts": 3, "backoff_s": 0}},
        params={"cfg": {"type": "object", "default": {}}},
    )
    result = run(doc)
    assert (result.status, result.steps[0].attempts, result.steps[0].error) == ("FAILED", 1, error)
    assert len(attempts(state_dir, result.run_id, "s")) == 1


def test_an_exception_in_a_step_is_a_retryable_failure_with_its_type(run):
    doc = policy(
        {"id": "s", "type": "test.crash", "on_error": "retry_then_fail", "retry": {"max_attempts": 2, "backoff_s": 0}}
    )
    result = run(doc)
    assert (result.steps[0].attempts, result.steps[0].error) == (2, "ZeroDivisionError: division by zero")


# -- timeouts -------------------------------------------------------------------------------------


def test_step_timeout_fails_the_step_with_its_message(run):
    started = time.monotonic()
    result = run(policy(sleep("slow", 5, timeout_s=0.1)))
    assert time.monotonic() - started < 2
    assert (result.status, result.steps[0].error) == ("FAILED", "timed out after 0.1 s")
    assert result.error == "step 'slow' failed: timed out after 0.1 s"


def test_step_timeout_is_retryable(run, state_dir):
    doc = policy(
        sleep("slow", 5, timeout_s=0.05, on_error="retry_then_fail", retry={"max_attempts": 2, "backoff_s": 0})
    )
    result = run(doc)
    assert attempts(state_dir, result.run_id, "slow") == [
        (1, 1, "FAILED", "timed out after 0.05 s"),
        (1, 2, "FAILED", "timed out after 0.05 s"),
    ]


def test_defaults_timeout_applies_unless_the_step_sets_its_own(run):
    doc = policy(
        sleep("uses_default", 0.3, on_error="log_and_continue"),
        sleep("own", 0.3, timeout_s=2),
        defaults={"timeout_s": 0.1},
    )
    result = run(doc)
    assert [(s.id, s.status, s.error) for s in result.steps] == [
        ("uses_default", "FAILED", "timed out after 0.1 s"),
        ("own", "SUCCESS", None),
    ]


def test_run_timeout_fails_the_run(run, state_dir):
    doc = policy(sleep("slow", 5), sleep("after", depends_on=["slow"]), timeout_s=0.2)
    started = time.monotonic()
    result = run(doc)
    assert time.monotonic() - started < 2
    assert (result.status, result.error) == ("FAILED", "run timed out after 0.2 s")
    assert [(s.id, s.status, s.error) for s in result.steps] == [
        ("slow", "FAILED", "run timed out after 0.2 s"),
        ("after", "PENDING", None),
    ]
    assert attempts(state_dir, result.run_id, "slow") == [(1, 1, "FAILED", "run timed out after 0.2 s")]


# -- on_failure ---------------------------------------------------------------------------------


ALERT = {
    "id": "alert",
    "type": "core.value",
    "params": {
        "value": {"error": {"ref": "ctx.run.error"}, "failed": {"ref": "ctx.run.failed_steps"}, "a": {"ref": "ctx.a"}}
    },
}


@pytest.mark.parametrize(
    ("main", "status", "alert", "reason"),
    [
        pytest.param(
            {"id": "a", "type": "core.value", "params": {"value": 1}},
            "SUCCESS",
            "SKIPPED",
            "on_failure: the run did not fail",
            id="success",
        ),
        pytest.param(
            {"id": "a", "type": "test.fail", "on_error": "log_and_continue"},
            "PARTIAL",
            "SKIPPED",
            "on_failure: the run did not fail",
            id="partial",
        ),
        pytest.param({"id": "a", "type": "test.fail"}, "FAILED", "SUCCESS", None, id="failed"),
    ],
)
def test_on_failure_steps_run_only_when_the_run_failed(run, main, status, alert, reason):
    result = run(policy(main, on_failure=[ALERT]))
    assert result.status == status
    assert [(s.id, s.phase, s.status, s.skip_reason) for s in result.steps][1] == ("alert", "on_failure", alert, reason)
    assert result.steps[1].attempts == (1 if alert == "SUCCESS" else 0)


def test_on_failure_steps_read_ctx_run_error_and_run_after_the_main_steps(run, store, state_dir):
    doc = policy(
        {"id": "a", "type": "test.fail", "params": {"message": "disk full"}},
        sleep("slow", 0.1),
        on_failure=[
            ALERT,
            {
                "id": "page",
                "type": "core.value",
                "depends_on": ["alert"],
                "params": {"value": {"template": "{{ run.error }} / {{ alert.failed }}"}},
            },
        ],
    )
    result = run(doc)
    assert result.status == "FAILED"
    assert result.error == "step 'a' failed: disk full"
    outputs = {s["step_id"]: json.loads(s["output_json"] or "null") for s in store.get_steps(result.run_id)}
    assert outputs["alert"] == {"error": "step 'a' failed: disk full", "failed": ["a"], "a": None}
    assert outputs["page"] == "step 'a' failed: disk full / ['a']"
    spans = times(state_dir, result.run_id)
    assert spans["alert"][0] >= spans["slow"][1]
    assert spans["page"][0] >= spans["alert"][1]


def test_on_failure_after_a_run_timeout(run, store):
    result = run(
        policy(
            sleep("slow", 5),
            timeout_s=0.1,
            on_failure=[{"id": "alert", "type": "core.value", "params": {"value": {"ref": "ctx.run.error"}}}],
        )
    )
    assert (result.status, statuses(result)["alert"]) == ("FAILED", "SUCCESS")
    assert json.loads(store.get_steps(result.run_id)[1]["output_json"]) == "run timed out after 0.1 s"


def test_a_failing_on_failure_step_keeps_the_runs_error(run):
    doc = policy(
        {"id": "a", "type": "test.fail", "params": {"message": "first"}},
        on_failure=[
            {"id": "alert", "type": "test.fail", "params": {"message": "smtp down"}},
            {"id": "after", "type": "core.value", "depends_on": ["alert"]},
        ],
    )
    result = run(doc)
    assert (result.status, result.error) == ("FAILED", "step 'a' failed: first")
    assert statuses(result) == {"a": "FAILED", "alert": "FAILED", "after": "PENDING"}


# -- cancel ----------------------------------------------------------------------------------------


def test_cancel_stops_running_steps_and_marks_the_run_cancelled(store, write_policy, state_dir):
    doc = policy(sleep("quick"), sleep("slow", 10, depends_on=["quick"]), sleep("after", depends_on=["slow"]))

    def cancel_soon(runner):
        asyncio.get_running_loop().call_later(0.2, runner.cancel, "cancelled by test")

    started = time.monotonic()
    result = asyncio.run(run_policy(write_policy(doc), store=store, on_runner=cancel_soon))
    assert time.monotonic() - started < 3
    assert (result.status, result.error) == ("CANCELLED", "cancelled by test")
    assert [(s.id, s.status, s.error) for s in result.steps] == [
        ("quick", "SUCCESS", None),
        ("slow", "FAILED", "cancelled by test"),
        ("after", "PENDING", None),
    ]
    assert attempts(state_dir, result.run_id, "slow") == [(1, 1, "FAILED", "cancelled by test")]


def _engine_env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env.update({"ENGINE_STATE_DIR": str(state_dir), "ENGINE_PLUGINS": "tests.stepkit", "PYTHONPATH": str(ROOT)})
    if os.environ.get("ENGINE_DB_URL"):  # the test runs on PostgreSQL
        env["ENGINE_DB_URL"] = os.environ["ENGINE_DB_URL"]
    return env


def _wait_for(state_dir: Path, query: str, expected: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (pg.postgres_url() or (state_dir / "engine.db").exists()) and sql(state_dir, query) == expected:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {query!r} == {expected!r}")


def test_sigterm_cancels_the_run_and_it_can_be_resumed(state_dir, write_policy, tmp_path, resume):
    doc = policy(sleep("first"), sleep("slow", 30, depends_on=["first"]), sleep("last", depends_on=["slow"]))
    path = write_policy(doc)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(path), "--json"],
        env=_engine_env(state_dir),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(state_dir, "SELECT status FROM step_runs WHERE step_id = 'slow'", [("RUNNING",)])
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    shown = json.loads(out)
    assert (shown["status"], shown["error"]) == ("CANCELLED", "cancelled by SIGTERM")
    assert [(s["id"], s["status"], s["error"]) for s in shown["steps"]] == [
        ("first", "SUCCESS", None),
        ("slow", "FAILED", "cancelled by SIGTERM"),
        ("last", "PENDING", None),
    ]
    assert sql(state_dir, "SELECT status FROM runs") == [("CANCELLED",)]

    fixed = dict(
        doc, steps=[sleep("first"), sleep("slow", 0, depends_on=["first"]), sleep("last", depends_on=["slow"])]
    )
    result = resume(shown["run_id"], policy_path=write_policy(fixed, "fixed.json"))
    assert (result.status, result.attempt) == ("SUCCESS", 2)
    assert Concurrency.order == ["slow", "last"]  # 'first' kept its result


# -- committed state ----------------------------------------------------------------------------


def test_every_state_change_is_committed_before_the_next_action(store, write_policy, state_dir, tmp_path):
    """An observer hears each change after it happened; another connection must already see it."""
    seen: dict[str, list[tuple[str, int, int]]] = {}

    def observe(event: StepEvent) -> None:
        ((status, attempts_done),) = sql(
            state_dir, "SELECT status, attempts FROM step_runs WHERE step_id = ?", event.step_id
        )
        ((run_status,),) = sql(state_dir, "SELECT status FROM runs")
        recorded = len(sql(state_dir, "SELECT 1 FROM step_attempts WHERE step_id = ?", event.step_id))
        assert (status, run_status) == (event.status.value, "RUNNING")
        seen.setdefault(event.step_id, []).append((status, attempts_done, recorded))

    doc = policy(
        {
            "id": "flaky",
            "type": "test.flaky",
            "params": {"counter_file": str(tmp_path / "n"), "fail_times": 1},
            "on_error": "retry_then_fail",
            "retry": {"max_attempts": 2, "backoff_s": 0},
        },
        sleep("next", depends_on=["flaky"]),
        sleep("skipped", skip_if=True),
        sleep("after_skip", depends_on=["skipped"]),
    )
    result = asyncio.run(run_policy(write_policy(doc), store=store, observer=observe))
    assert result.status == "SUCCESS"
    assert seen == {
        # (status, attempts column, rows in step_attempts) as another connection saw them
        "flaky": [("RUNNING", 0, 0), ("RUNNING", 0, 0), ("RUNNING", 1, 1), ("RUNNING", 1, 1), ("SUCCESS", 2, 2)],
        "next": [("RUNNING", 0, 0), ("RUNNING", 0, 0), ("SUCCESS", 1, 1)],
        "skipped": [("RUNNING", 0, 0), ("SKIPPED", 0, 0)],
        "after_skip": [("SKIPPED", 0, 0)],
    }
    assert sql(state_dir, "SELECT status, finished_at IS NOT NULL FROM runs") == [("SUCCESS", 1)]


def test_run_and_step_rows_hold_what_the_issue_lists(run, state_dir):
    doc = policy(
        {"id": "a", "type": "test.typed", "params": {"count": 1}},
        sleep("b", depends_on=["a"]),
        params={"p": {"type": "integer", "default": 1}},
        id="rows",
    )
    result = run(doc, param_strings={"p": "5"})
    ((policy_id, policy_hash, snapshot, params, status, dry_run, trigger, attempt, started, finished, error, pid),) = (
        sql(
            state_dir,
            "SELECT policy_id, policy_hash, policy_json, params_json, status, dry_run, trigger, attempt, "
            "started_at, finished_at, error, pid FROM runs WHERE id = ?",
            result.run_id,
        )
    )
    from engine.policy import sha256_of

    assert (policy_id, status, dry_run, trigger, attempt, error, pid) == (
        "rows",
        "SUCCESS",
        0,
        "api",
        1,
        None,
        os.getpid(),
    )
    assert json.loads(snapshot) == doc
    assert policy_hash == sha256_of(doc)
    assert json.loads(params) == {"p": 5}
    assert started < finished
    rows = sql(
        state_dir,
        "SELECT step_id, status, attempts, started_at < finished_at, duration_s > 0, output_json, "
        "length(output_hash), length(definition_hash), error, skip_reason, run_attempt "
        "FROM step_runs WHERE run_id = ? ORDER BY position",
        result.run_id,
    )
    assert rows == [
        (
            "a",
            "SUCCESS",
            1,
            1,
            1,
            '{"count":1,"items":[{"amount":0.0,"name":"n0"}],"label":"x"}',
            64,
            64,
            None,
            None,
            1,
        ),
        ("b", "SUCCESS", 1, 1, 1, '"b"', 64, 64, None, None, 1),
    ]


def test_step_context(run, store):
    doc = policy({"id": "info", "type": "test.info"}, params={"p": {"type": "string", "default": "v"}}, id="ctx-pol")
    result = run(doc)
    out = json.loads(store.get_steps(result.run_id)[0]["output_json"])
    assert out["run_id"] == result.run_id
    assert (out["step_id"], out["attempt"], out["dry_run"], out["params"]) == ("info", 1, False, {"p": "v"})
    assert out["run"]["id"] == result.run_id
    assert (out["run"]["policy_id"], out["run"]["attempt"], out["run"]["dry_run"], out["run"]["trigger"]) == (
        "ctx-pol",
        1,
        False,
        "api",
    )
    assert out["run"]["started_at"] == result.started_at


def test_observer_hears_every_step_event(store, write_policy):
    events: list[tuple[str, StepState, int]] = []
    doc = policy(
        sleep("a"),
        {"id": "b", "type": "test.fail", "depends_on": ["a"], "on_error": "log_and_continue"},
        sleep("c", depends_on=["b"]),
    )
    asyncio.run(
        run_policy(write_policy(doc), store=store, observer=lambda e: events.append((e.step_id, e.status, e.attempt)))
    )
    assert events == [
        ("a", StepState.RUNNING, 0),
        ("a", StepState.RUNNING, 1),
        ("a", StepState.SUCCESS, 1),  # started, attempt 1
        ("b", StepState.RUNNING, 0),
        ("b", StepState.RUNNING, 1),
        ("b", StepState.FAILED, 1),
        ("c", StepState.SKIPPED, 0),
    ]


# -- secrets --------------------------------------------------------------------------------------


SECRET = "s3cr3t-Value-9f8e7d"


def _files_containing(root: Path, needle: str) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()
    )


def test_secrets_never_reach_the_database_logs_or_errors(cli, write_policy, state_dir):
    doc = policy(
        {"id": "ok", "type": "test.echo", "params": {"text": {"secret": "API_TOKEN"}}},
        {"id": "wrapped", "type": "test.echo", "params": {"text": {"template": "token={{ ok.text }}"}}},
        {
            "id": "typed",
            "type": "test.typed",
            "params": {"count": {"secret": "API_TOKEN"}},
            "depends_on": ["wrapped"],
            "on_error": "log_and_continue",
        },
        {
            "id": "bad",
            "type": "test.echo",
            "params": {"text": {"secret": "FAILING_TOKEN"}},
            "depends_on": ["typed"],
            "trigger_rule": "all_done",
            "on_error": "retry_then_fail",
            "retry": {"max_attempts": 2, "backoff_s": 0},
        },
        on_failure=[{"id": "alert", "type": "core.value", "params": {"value": {"ref": "ctx.run.error"}}}],
    )
    result = cli(
        "run", str(write_policy(doc)), "--json", env={"API_TOKEN": SECRET, "FAILING_TOKEN": "fail:" + SECRET + "-2"}
    )
    assert result.returncode == 1, result.stderr
    shown = json.loads(result.stdout)
    assert [(s["id"], s["status"], s["error"]) for s in shown["steps"]] == [
        ("ok", "SUCCESS", None),
        ("wrapped", "SUCCESS", None),
        (
            "typed",
            "FAILED",
            "invalid params after resolving values: /steps/2/params/count: Input should be a valid "
            "integer, unable to parse string as an integer (got '***')",
        ),
        ("bad", "FAILED", "failed with ***"),
        ("alert", "SUCCESS", None),
    ]
    assert shown["error"] == "step 'bad' failed: failed with ***"
    assert (state_dir / "logs" / "engine.log").stat().st_size > 0
    assert _files_containing(state_dir, SECRET) == []
    assert SECRET not in result.stdout and SECRET not in result.stderr
    outputs = dict(sql(state_dir, "SELECT step_id, output_json FROM step_runs"))
    assert json.loads(outputs["ok"]) == {"text": "***"}
    assert json.loads(outputs["wrapped"]) == {"text": "token=***"}
    assert json.loads(outputs["alert"]) == "step 'bad' failed: failed with ***"
    errors = [e for (e,) in sql(state_dir, "SELECT error FROM step_attempts WHERE step_id = 'bad'")]
    assert errors == ["failed with ***", "failed with ***"]


@pytest.fixture
def log_file(state_dir):
    from engine import logs

    logs.configure(state_dir, console=False)
    yield state_dir / "logs" / "engine.log"
    logs.close()


def test_secret_inside_nested_log_fields_is_redacted(run, monkeypatch, log_file):
    monkeypatch.setenv("API_TOKEN", SECRET)
    result = run(
        policy({"id": "n", "type": "test.nested_log", "params": {"text": {"secret": "API_TOKEN"}, "log_nested": True}})
    )
    assert result.status == "SUCCESS"
    assert '"event": "nested"' in log_file.read_text()
    assert SECRET not in log_file.read_text()


def test_secret_used_as_an_output_key_is_redacted(run, monkeypatch, state_dir):
    monkeypatch.setenv("API_TOKEN", SECRET)
    result = run(
        policy({"id": "n", "type": "test.nested_log", "params": {"text": {"secret": "API_TOKEN"}, "as_key": True}})
    )
    assert result.status == "SUCCESS"
    assert _files_containing(state_dir, SECRET) == []


def test_secret_in_top_level_log_fields_is_redacted(run, monkeypatch, log_file):
    monkeypatch.setenv("API_TOKEN", SECRET)
    run(policy({"id": "e", "type": "test.echo", "params": {"text": {"secret": "API_TOKEN"}}}))
    text = log_file.read_text()
    assert '"text": "***"' in text
    assert SECRET not in text


def test_secret_with_a_backslash_is_redacted_in_params_errors(run, monkeypatch, state_dir):
    monkeypatch.setenv("PASSWORD", "pa\\ss-w0rd")
    result = run(policy({"id": "t", "type": "test.typed", "params": {"count": {"secret": "PASSWORD"}}}))
    assert result.steps[0].error == (
        "invalid params after resolving values: /steps/0/params/count: Input should be a "
        "valid integer, unable to parse string as an integer (got '***')"
    )
    assert _files_containing(state_dir, "ss-w0rd") == []


def test_log_lines_are_bound_to_run_and_step(run, log_file):
    result = run(policy({"id": "say", "type": "test.echo", "params": {"text": "hello"}}))
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    echo = next(e for e in events if e["event"] == "echo")
    assert (echo["run_id"], echo["step_id"], echo["policy_id"], echo["text"]) == (result.run_id, "say", "test", "hello")
    assert {e["event"] for e in events} >= {"run.started", "step.started", "step.succeeded", "run.finished"}


def test_ctx_attempt_counts_the_tries_of_a_step(run, store):
    doc = policy(
        {
            "id": "a",
            "type": "test.attempt",
            "params": {"succeed_on": 3},
            "on_error": "retry_then_fail",
            "retry": {"max_attempts": 3, "backoff_s": 0},
        }
    )
    result = run(doc)
    assert json.loads(store.get_steps(result.run_id)[0]["output_json"]) == {"attempt": 3, "run_attempt": 1}


def test_ctx_artifacts_store_files_content_addressed(run, store, state_dir):
    import hashlib

    result = run(
        policy(
            {"id": "page", "type": "test.artifact", "params": {"text": "<h1>hi</h1>"}},
            {"id": "again", "type": "test.artifact", "params": {"text": "<h1>hi</h1>", "name": "b.html"}},
        )
    )
    sha = hashlib.sha256(b"<h1>hi</h1>").hexdigest()
    out = {s["step_id"]: json.loads(s["output_json"]) for s in store.get_steps(result.run_id)}
    assert out["page"] == {
        "sha256": sha,
        "path": str(state_dir / "artifacts" / sha[:2] / sha),
        "media_type": "text/html",
        "size": 11,
        "name": "report.html",
    }
    assert out["again"]["path"] == out["page"]["path"]
    assert Path(out["page"]["path"]).read_bytes() == b"<h1>hi</h1>"
