"""Step and run states, and the transitions allowed between them.

step:  PENDING -> RUNNING -> SUCCESS | FAILED | SKIPPED
       PENDING -> SKIPPED            (an upstream step was skipped or failed)
       PENDING -> FAILED             (the run was cancelled or timed out before it started)
       FAILED | SKIPPED | PENDING -> PENDING   (reset by a resume)
       RUNNING -> FAILED             (interrupted: the process died)

run:   RUNNING -> SUCCESS | PARTIAL | FAILED | CANCELLED
       FAILED | PARTIAL | CANCELLED -> RUNNING   (resume)
"""

from __future__ import annotations

from enum import StrEnum

from .errors import InvalidTransition


class StepState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"

    @property
    def is_terminal(self) -> bool:
        return self in (StepState.SUCCESS, StepState.FAILED, StepState.SKIPPED)


class RunState(StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_resumable(self) -> bool:
        return self in (RunState.FAILED, RunState.PARTIAL, RunState.CANCELLED)


_S = StepState
STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.SKIPPED, _S.PENDING}),
    _S.RUNNING: frozenset({_S.SUCCESS, _S.FAILED, _S.SKIPPED}),
    _S.SUCCESS: frozenset({_S.PENDING}),  # only when a resume re-runs a changed step
    _S.FAILED: frozenset({_S.PENDING}),
    _S.SKIPPED: frozenset({_S.PENDING}),
}

_R = RunState
RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    _R.RUNNING: frozenset({_R.SUCCESS, _R.PARTIAL, _R.FAILED, _R.CANCELLED}),
    _R.SUCCESS: frozenset(),
    _R.PARTIAL: frozenset({_R.RUNNING}),
    _R.FAILED: frozenset({_R.RUNNING}),
    _R.CANCELLED: frozenset({_R.RUNNING}),
}


def check_step(step_id: str, old: StepState, new: StepState) -> None:
    if new not in STEP_TRANSITIONS[old]:
        raise InvalidTransition(f"step {step_id!r}: illegal transition {old.value} -> {new.value}")


def check_run(run_id: str, old: RunState, new: RunState) -> None:
    if new not in RUN_TRANSITIONS[old]:
        raise InvalidTransition(f"run {run_id!r}: illegal transition {old.value} -> {new.value}")
