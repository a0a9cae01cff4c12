"""engine.states: step and run states and the transitions allowed between them (issue #3 §6)."""

from __future__ import annotations

import itertools

import pytest

from engine import InvalidTransition, RunState, StepState
from engine.states import check_run, check_step

S = StepState
R = RunState

# The machine, PENDING -> RUNNING -> SUCCESS | FAILED | SKIPPED, plus what the runner needs:
# upstream skips and resets to PENDING by a resume (a cancelled step was RUNNING: RUNNING -> FAILED).
LEGAL_STEP = {
    (S.PENDING, S.RUNNING),
    (S.RUNNING, S.SUCCESS),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.SKIPPED),
    (S.PENDING, S.SKIPPED),
    (S.PENDING, S.PENDING),
    (S.FAILED, S.PENDING),
    (S.SKIPPED, S.PENDING),
    (S.SUCCESS, S.PENDING),
}
LEGAL_RUN = {
    (R.RUNNING, R.SUCCESS),
    (R.RUNNING, R.PARTIAL),
    (R.RUNNING, R.FAILED),
    (R.RUNNING, R.CANCELLED),
    (R.FAILED, R.RUNNING),
    (R.PARTIAL, R.RUNNING),
    (R.CANCELLED, R.RUNNING),
}


def _pairs(states):
    return [pytest.param(a, b, id=f"{a.value}->{b.value}") for a, b in itertools.product(states, repeat=2)]


def test_state_values():
    assert [s.value for s in StepState] == ["PENDING", "RUNNING", "SUCCESS", "FAILED", "SKIPPED"]
    assert [s.value for s in RunState] == ["RUNNING", "SUCCESS", "PARTIAL", "FAILED", "CANCELLED"]


@pytest.mark.parametrize(("old", "new"), _pairs(StepState))
def test_step_transitions(old, new):
    if (old, new) in LEGAL_STEP:
        check_step("load", old, new)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_step("load", old, new)
        assert str(info.value) == f"step 'load': illegal transition {old.value} -> {new.value}"


@pytest.mark.parametrize(("old", "new"), _pairs(RunState))
def test_run_transitions(old, new):
    if (old, new) in LEGAL_RUN:
        check_run("r1", old, new)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_run("r1", old, new)
        assert str(info.value) == f"run 'r1': illegal transition {old.value} -> {new.value}"


def test_terminal_and_resumable_states():
    assert {s for s in StepState if s.is_terminal} == {S.SUCCESS, S.FAILED, S.SKIPPED}
    assert {s for s in RunState if s.is_resumable} == {R.FAILED, R.PARTIAL, R.CANCELLED}


def test_invalid_transition_is_an_engine_bug_error():
    from engine import EngineError

    assert issubclass(InvalidTransition, EngineError)
    assert issubclass(InvalidTransition, RuntimeError)


def test_runner_refuses_an_illegal_step_transition_before_writing_it(store, write_policy):
    """The runner checks every transition before it commits: the database never holds an illegal one."""
    from engine.runner import Runner, RunSetup
    from engine.validate import validate_file
    from tests.conftest import policy

    valid = validate_file(write_policy(policy({"id": "a", "type": "core.value"})))
    store.create_run(
        {
            "id": "r1",
            "policy_id": "test",
            "policy_hash": valid.hash,
            "policy_json": "{}",
            "params_json": "{}",
            "status": "RUNNING",
            "dry_run": False,
            "trigger": "manual",
            "attempt": 1,
            "started_at": "2024-01-01",
        },
        [
            {
                "step_id": "a",
                "position": 0,
                "phase": "main",
                "type": "core.value",
                "side_effects": False,
                "status": "PENDING",
                "attempts": 0,
                "definition_hash": "x",
            }
        ],
    )
    runner = Runner(RunSetup(store=store, valid=valid, run_id="r1", params={}, run_info={"id": "r1"}))
    with pytest.raises(InvalidTransition, match="step 'a': illegal transition PENDING -> SUCCESS"):
        runner._transition("a", S.SUCCESS)
    assert store.get_steps("r1")[0]["status"] == "PENDING"
    runner._transition("a", S.RUNNING)
    with pytest.raises(InvalidTransition, match="step 'a': illegal transition RUNNING -> PENDING"):
        runner._transition("a", S.PENDING)
    assert store.get_steps("r1")[0]["status"] == "RUNNING"
