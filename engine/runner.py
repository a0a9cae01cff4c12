"""The async state-machine runner.

It follows graphlib's protocol: start every ready step (in policy order, up to
``max_concurrency``), wait for the first to finish, commit its new state, release its
dependents, repeat. Every state change is committed to the store before the next action,
so a crash at any point leaves a run that ``engine resume`` can continue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import json
import operator
import random
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import outputs, pointers, redact
from .conditions import parse_condition
from .config import EngineConfig
from .errors import ConditionError, GovernanceError, StepError, StepTimeout
from .logs import get_logger
from .policy import (
    OnError,
    Retry,
    StepSpec,
    TriggerRule,
    canonical_json,
    effective_on_error,
    effective_retry,
    effective_timeout,
)
from .resources import RunResources
from .states import RunState, StepState, check_step
from .step import SavedState, Step, StepContext
from .store import STEP_STATE_COLUMNS, Store, now
from .validate import ValidPolicy
from .values import RunContext, mask_secrets, resolve

CANCEL_GRACE_S = 2.5  # how long a cancelled run waits for its running steps to stop


@dataclass
class StepEvent:
    """What the live table (or any observer) hears about a step."""

    step_id: str
    status: StepState
    attempt: int
    error: str | None = None
    skip_reason: str | None = None
    duration_s: float | None = None


Observer = Callable[[StepEvent], None]


_UNKNOWN = object()  # a value the store's row is not known to hold
_row_values = operator.attrgetter(*STEP_STATE_COLUMNS)


@dataclass(slots=True)
class _StepRecord:
    """The runner's copy of a step's row (the columns in store.STEP_STATE_COLUMNS).

    ``stored`` holds the values the row has in the store (read when the runner starts, then as
    last written), so that ``Runner._transition`` writes only the columns that changed."""

    # in the order of STEP_STATE_COLUMNS, so that a row's values can be given positionally
    status: StepState
    attempts: int = 0
    run_attempt: int = 1
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    error: str | None = None
    skip_reason: str | None = None
    output_json: str | None = None
    output_hash: str | None = None
    pending_state: str | None = None
    stored: tuple[Any, ...] = (_UNKNOWN,) * len(STEP_STATE_COLUMNS)

    def changes(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The values of every column, and those that differ from the store's (status always)."""
        row = _row_values(self)
        changed = {name: new for name, new, old in zip(STEP_STATE_COLUMNS, row, self.stored, strict=True) if new != old}
        changed["status"] = self.status.value
        return row, changed


@dataclass
class RunSetup:
    """Everything a runner needs for one run attempt."""

    store: Store
    valid: ValidPolicy
    run_id: str
    params: dict[str, Any]
    run_info: dict[str, Any]
    run_attempt: int = 1
    dry_run: bool = False
    preview_dir: Path | None = None
    observer: Observer | None = None
    # steps already finished (a resume): id -> (state, output)
    kept: dict[str, tuple[StepState, Any]] = field(default_factory=dict)
    config: EngineConfig = field(default_factory=EngineConfig)
    actor: str = ""  # who started the run (engine.governance.current_actor)


class Runner:
    def __init__(self, setup: RunSetup) -> None:
        self.setup = setup
        self.store = setup.store
        self.valid = setup.valid
        self.policy = setup.valid.policy
        self.run_id = setup.run_id
        self.artifacts = setup.store.artifacts()
        self.resources = RunResources()
        self.ctx = RunContext(setup.params, setup.run_info)
        self.policy_dir = self.valid.path.resolve().parent if self.valid.path else None
        self.records: dict[str, _StepRecord] = {}
        self.position = {sid: i for i, sid in enumerate(self.valid.main_ids + self.valid.failure_ids)}
        self.dependents: dict[str, list[str]] = {sid: [] for sid in self.position}
        for sid, deps in self.valid.deps.items():
            for dep in deps:
                self.dependents[dep].append(sid)
        self.log = get_logger().bind(run_id=self.run_id, policy_id=self.policy.id)
        self._cancel_reason: str | None = None
        self._task: asyncio.Task[Any] | None = None
        self._stopping = False
        self._failure: str | None = None
        self._failed_steps: list[str] = []
        rows = self.store.step_states(self.run_id)  # a resume leaves some columns as they were
        for sid in self.position:
            row = rows.get(sid)
            self.records[sid] = (
                _StepRecord(StepState.PENDING, *row[1:], stored=row) if row else _StepRecord(StepState.PENDING)
            )
        for sid, (state, output) in setup.kept.items():
            self.records[sid].status = state
            if state is StepState.SUCCESS:
                self.ctx.set_output(sid, output)
            else:
                self.ctx.set_null(sid)

    # -- the run lifecycle ---------------------------------------------------------------

    async def execute(self) -> RunState:
        """Run the main steps, then on_failure steps if the run failed; commit the run's end."""
        self.log.info("run.started", attempt=self.setup.run_attempt, dry_run=self.setup.dry_run)
        self._task = asyncio.current_task()
        for sid in self.setup.kept:  # a resume: show what is kept as it is
            self._emit(sid)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self.store.leases.watch(self.run_id, lambda owner: loop.call_soon_threadsafe(self._lease_lost, owner))
        try:
            return await self._execute(started)
        finally:  # a browser the steps shared is closed however the run ended
            self.store.leases.unwatch(self.run_id)
            await asyncio.shield(self.resources.aclose(self.log))

    def _lease_lost(self, owner: str) -> None:
        """Another process took this run over (this one could not renew its lease in time): stop
        at once, writing nothing more to a run that is no longer ours."""
        self.store.fence(self.run_id)
        self.log.error("run.lease_lost", owner=owner, action="stopped here; the new owner carries the run on")
        self.cancel(f"lease lost to {owner}")

    async def _execute(self, started: float) -> RunState:
        try:
            await self._phase(self.valid.main_ids, deadline=self._deadline())
        except asyncio.CancelledError:
            return self._finish(RunState.CANCELLED, self._cancel_reason or "cancelled", started)
        state = self._main_outcome()
        error = self._failure if state is RunState.FAILED else None
        if state is RunState.FAILED and self.valid.failure_ids:
            try:
                await self._run_on_failure()
            except asyncio.CancelledError:
                pass  # the run has failed already; stopping its alerts early does not change that
        elif state is not RunState.FAILED:
            for sid in self.valid.failure_ids:
                if self.records[sid].status is StepState.PENDING:
                    self._skip_pending(sid, "on_failure: the run did not fail")
        return self._finish(state, error, started)

    def cancel(self, reason: str) -> None:
        """Stop the run (Ctrl-C, SIGTERM): running steps are cancelled and the run ends CANCELLED."""
        self._cancel_reason = reason
        if self._task is not None and not self._task.done():
            self._task.cancel(reason)

    def _deadline(self) -> float | None:
        return time.monotonic() + self.policy.timeout_s if self.policy.timeout_s else None

    def _main_outcome(self) -> RunState:
        if self._stopping:
            return RunState.FAILED
        if any(self.records[s].status is StepState.FAILED for s in self.valid.main_ids):
            return RunState.PARTIAL
        return RunState.SUCCESS

    async def _run_on_failure(self) -> None:
        for sid in self.valid.main_ids:
            if self.records[sid].status is not StepState.SUCCESS:
                self.ctx.set_null(sid)
        self.ctx.data["run"] = {**self.ctx.data["run"], "error": self._failure, "failed_steps": self._failed_steps}
        self._stopping = False
        self.log.info("run.on_failure", steps=len(self.valid.failure_ids))
        await self._phase(self.valid.failure_ids, deadline=None)

    def _finish(self, state: RunState, error: str | None, started: float) -> RunState:
        commit_state = state is RunState.SUCCESS and not self.setup.dry_run
        self.store.finish_run(self.run_id, commit_state, status=state.value, finished_at=now(), error=_clean(error))
        self.store.checkpoint()
        self.log.info("run.finished", status=state.value, duration_s=round(time.monotonic() - started, 3))
        return state

    # -- governance hooks for steps (ctx.use_quota, ctx.audit) ----------------------------

    def _use_quota(self, name: str, count: int) -> None:
        if self.setup.dry_run:
            return
        from .governance import quotas

        quotas.use(self.store.engine, self.setup.config, name, self.setup.actor, count, subject=self.policy.id)

    def _audit_head(self) -> tuple[int, str] | None:
        from .governance import audit

        if not audit.head_in_reports(self.setup.config):
            return None
        return audit.head(self.store.engine)

    def _audit(self, step_id: str, action: str, details: dict[str, Any]) -> None:
        from .governance import audit

        audit.record(
            self.store.engine,
            self.setup.actor,
            action,
            self.run_id,
            {**details, "policy_id": self.policy.id, "step_id": step_id, "dry_run": self.setup.dry_run},
        )

    # -- scheduling ------------------------------------------------------------------------

    async def _phase(self, ids: list[str], deadline: float | None) -> None:
        members = set(ids)
        waiting = {
            sid: {d for d in self.valid.deps[sid] if d in members and not self.records[d].status.is_terminal}
            for sid in ids
            if not self.records[sid].status.is_terminal
        }
        ready: list[tuple[int, str]] = [(self.position[s], s) for s, deps in waiting.items() if not deps]
        heapq.heapify(ready)
        running: dict[asyncio.Task[StepState], str] = {}

        def release(done_id: str) -> None:
            for child in self.dependents[done_id]:
                pending = waiting.get(child)
                if pending is not None and done_id in pending:
                    pending.discard(done_id)
                    if not pending:
                        heapq.heappush(ready, (self.position[child], child))

        finished: list[asyncio.Task[StepState]] = []
        wakeup = asyncio.Event()

        def on_done(task: asyncio.Task[StepState]) -> None:
            finished.append(task)
            wakeup.set()

        try:
            while True:
                while ready and not self._stopping:
                    _, sid = ready[0]
                    reason = self._upstream_skip_reason(sid)
                    if reason is not None:
                        heapq.heappop(ready)
                        self._skip_pending(sid, reason)
                        release(sid)
                    elif len(running) < self.policy.max_concurrency:
                        heapq.heappop(ready)
                        task = asyncio.create_task(self._run_step(sid), name=sid)
                        task.add_done_callback(on_done)
                        running[task] = sid
                    else:
                        break
                if not running:
                    return
                if not finished:
                    wakeup.clear()
                    try:
                        async with _timeout(None if deadline is None else deadline - time.monotonic()):
                            await wakeup.wait()
                    except TimeoutError:  # the run's deadline passed
                        self._on_run_timeout()
                        await self._cancel_all(running, f"run timed out after {self.policy.timeout_s:g} s")
                        return
                done = sorted(finished, key=lambda t: self.position[running[t]])
                finished.clear()
                for task in done:
                    sid = running.pop(task)
                    state = task.result()
                    if state is StepState.FAILED and self._on_error(sid) is not OnError.log_and_continue:
                        self._stop(sid)
                    release(sid)
        except asyncio.CancelledError:
            await self._cancel_all(running, self._cancel_reason or "cancelled")
            raise

    def _stop(self, sid: str) -> None:
        if not self._stopping:
            self._failure = f"step {sid!r} failed: {self.records[sid].error}"
        self._stopping = True

    def _on_run_timeout(self) -> None:
        self._stopping = True
        self._failure = f"run timed out after {self.policy.timeout_s:g} s"

    async def _cancel_all(self, running: dict[asyncio.Task[StepState], str], reason: str) -> None:
        """Cancel the running steps and wait for them, at most ``CANCEL_GRACE_S``.

        A step that does not stop in time (it swallows the cancellation, or its clean-up hangs)
        is recorded FAILED with the reason and left behind: the run ends anyway. A plain
        ``def run`` in its thread cannot be stopped at all; its thread is abandoned."""
        self._cancel_reason = reason
        for task in running:
            task.cancel(reason)
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=CANCEL_GRACE_S)
        for task in pending:
            sid = running[task]
            if not self.records[sid].status.is_terminal:
                self.log.warning("step.abandoned", step_id=sid, reason=reason, grace_s=CANCEL_GRACE_S)
                self._end(sid, StepState.FAILED, time.monotonic(), self.log.bind(step_id=sid), error=reason)

    def _upstream_skip_reason(self, sid: str) -> str | None:
        spec = self.valid.spec(sid)
        if spec.trigger_rule is TriggerRule.all_done:
            return None
        for dep in self.valid.deps[sid]:
            status = self.records[dep].status
            if status is StepState.SKIPPED:
                return f"upstream {dep!r} was skipped"
            if status is StepState.FAILED:
                return f"upstream {dep!r} failed"
        return None

    def _retries(self, spec: StepSpec) -> bool:
        """A step retries under retry_then_fail, or when retry settings apply to it (its own or defaults.retry)."""
        if effective_on_error(spec, self.policy.defaults) is OnError.retry_then_fail:
            return True
        return spec.retry is not None or self.policy.defaults.retry is not None

    def _on_error(self, sid: str) -> OnError:
        return effective_on_error(self.valid.spec(sid), self.policy.defaults)

    # -- one step --------------------------------------------------------------------------

    def _transition(self, sid: str, new: StepState, attempt_row: dict[str, Any] | None = None, **values: Any) -> None:
        """Check the transition, then commit the step's new state (the columns that changed) and
        its last attempt at once."""
        record = self.records[sid]
        check_step(sid, record.status, new)
        record.status = new
        for key, value in values.items():
            setattr(record, key, value)
        row, changes = record.changes()
        self.store.set_step_state(self.run_id, sid, changes, attempt_row)
        record.stored = row

    def _emit(self, sid: str, **info: Any) -> None:
        if self.setup.observer is not None:
            record = self.records[sid]
            self.setup.observer(StepEvent(sid, record.status, record.attempts, **info))

    def _skip_pending(self, sid: str, reason: str) -> None:
        self._transition(
            sid, StepState.SKIPPED, skip_reason=reason, finished_at=now(), run_attempt=self.setup.run_attempt
        )
        self.ctx.set_null(sid)
        self.log.info("step.skipped", step_id=sid, reason=reason)
        self._emit(sid, skip_reason=reason)

    async def _run_step(self, sid: str) -> StepState:
        spec = self.valid.spec(sid)
        record = self.records[sid]
        log = self.log.bind(step_id=sid)
        started_at = now()
        clock = time.monotonic()
        self._transition(
            sid,
            StepState.RUNNING,
            started_at=started_at,
            attempts=0,
            error=None,
            skip_reason=None,
            run_attempt=self.setup.run_attempt,
            finished_at=None,
            duration_s=None,
            output_json=None,
            output_hash=None,
            pending_state=None,
        )
        self._emit(sid)
        try:
            condition = self.valid.skip_conditions.get(sid)
            if condition is not None and condition.evaluate(self.ctx):
                return self._end(sid, StepState.SKIPPED, clock, log, skip_reason="skip_if: condition is true")
        except ConditionError as exc:
            return self._end(sid, StepState.FAILED, clock, log, error=str(exc))

        retry: Retry | None = None  # worked out on the first failure: most steps never need it
        max_attempts = 1
        attempt = 0  # the runner's attempts; record.attempts also counts tries a step made inside one
        while True:
            attempt += 1
            record.attempts += 1
            attempt_started = now()
            log.info("step.started", attempt=record.attempts)
            self._emit(sid)
            try:
                output, staged = await self._attempt(sid, spec, attempt, log)
            except asyncio.CancelledError:
                error = self._cancel_reason or "cancelled"
                self._end(sid, StepState.FAILED, clock, log, error=error, attempt_started=attempt_started)
                raise
            except StepError as exc:
                if _cancelling():  # the step turned our cancellation into an error of its own
                    error = self._cancel_reason or "cancelled"
                    self._end(sid, StepState.FAILED, clock, log, error=error, attempt_started=attempt_started)
                    raise asyncio.CancelledError(error) from None
                record.attempts += exc.tries - 1
                error, retryable = _clean(str(exc)) or type(exc).__name__, exc.retryable
            else:
                return self._end(
                    sid, StepState.SUCCESS, clock, log, output=output, attempt_started=attempt_started, staged=staged
                )
            if retry is None:
                retry = effective_retry(spec, self.policy.defaults)
                max_attempts = retry.max_attempts if self._retries(spec) else 1
            if not retryable or attempt >= max_attempts:
                return self._end(sid, StepState.FAILED, clock, log, error=error, attempt_started=attempt_started)
            self._record_attempt(sid, attempt_started, StepState.FAILED, error)
            delay = backoff_delay(retry, attempt)
            log.warning("step.retry", attempt=record.attempts, error=error, delay_s=round(delay, 3))
            self._emit(sid, error=error)
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                self._end(sid, StepState.FAILED, clock, log, error=self._cancel_reason or "cancelled")
                raise

    async def _attempt(self, sid: str, spec: StepSpec, attempt: int, log: Any) -> tuple[Any, dict[str, Any]]:
        """One try: resolve params, call run (or preview), check the output. Raises StepError.

        Returns the output and the values the step staged with ``ctx.state.stage``."""
        cls = self.valid.step_types[sid]
        where = self._pointer(sid)
        self.ctx.data["run"]["attempt"] = self.setup.run_attempt
        try:
            params_ctx = self._own_state_view(sid, cls, spec, where) if sid in self.valid.self_refs else self.ctx
            raw = resolve(spec.params, params_ctx, pointers.join(where, "params"), cls.condition_fields())
            params = cls.Params.model_validate(raw)
        except ValidationError as exc:
            raise StepError(_params_error(exc, pointers.join(where, "params")), retryable=False) from None
        ctx = StepContext(
            run_id=self.run_id,
            step_id=sid,
            attempt=attempt,
            run=dict(self.ctx.data["run"]),
            params=self.ctx.data["params"],
            dry_run=self.setup.dry_run,
            log=log,
            artifacts=self.artifacts,
            preview_dir=self.setup.preview_dir,
            policy_dir=self.policy_dir,
            pointer=where,
            state=SavedState(lambda: self.store.get_pipeline_state(self.policy.id, sid)),
            sections=self.valid.sections,
            config=self.setup.config,
            policy_id=self.policy.id,
            _evaluate=lambda cond, at="": parse_condition(cond, at).evaluate(self.ctx),
            _database=self.store.database,
            _resources=self.resources,
            actor=self.setup.actor,
            _quota=self._use_quota,
            _audit=lambda action, details, step=sid: self._audit(step, action, details),
            _audit_head=self._audit_head,
            _leases=self.store.leases,
        )
        step = cls()
        previewing = self.setup.dry_run and cls.has_side_effects(params)
        timeout = effective_timeout(spec, self.policy.defaults)
        try:
            async with _timeout(timeout):
                if previewing:
                    result = await _call_preview(step, params, ctx, spec)
                else:
                    result = await (
                        step.run(params, ctx) if cls.run_is_async else asyncio.to_thread(step.run, params, ctx)
                    )
        except TimeoutError:
            raise StepTimeout(f"timed out after {timeout:g} s") from None
        except StepError:
            raise
        except GovernanceError as exc:  # a quota the step used up: no retry will help
            raise StepError(str(exc), retryable=False) from exc
        except Exception as exc:  # a bug or an unexpected library error inside the step
            if _cancelling():  # e.g. a browser that died because we are stopping: that is the cancellation
                raise asyncio.CancelledError(self._cancel_reason or "cancelled") from None
            raise StepError(f"{type(exc).__name__}: {exc}") from exc
        if previewing:  # a preview has its own shape; steps document it
            result = outputs.to_plain(result)
            self._write_preview(sid, result)
            return result, {}
        return _check_output(cls, result, where), ctx.state.staged

    def _own_state_view(self, sid: str, cls: type[Step], spec: StepSpec, where: str) -> RunContext:
        """The run context in which ``ctx.<sid>`` is the step's saved state: what the last
        successful run committed, over the step type's ``initial_state`` (e.g. the cursor)."""
        initial = resolve(cls.initial_state(spec.params), self.ctx, pointers.join(where, "params"))
        saved = self.store.get_pipeline_state(self.policy.id, sid)
        return self.ctx.with_step(sid, {**initial, **saved})

    def _attempt_row(self, sid: str, started_at: str, state: StepState, error: str | None) -> dict[str, Any]:
        return {
            "run_attempt": self.setup.run_attempt,
            "attempt": self.records[sid].attempts,
            "status": state.value,
            "started_at": started_at,
            "finished_at": now(),
            "error": _clean(error),
        }

    def _record_attempt(self, sid: str, started_at: str, state: StepState, error: str | None) -> None:
        """A failed attempt that will be retried: record it, the step stays RUNNING."""
        self.store.update_step(
            self.run_id, sid, self._attempt_row(sid, started_at, state, error), attempts=self.records[sid].attempts
        )

    def _end(
        self,
        sid: str,
        state: StepState,
        clock: float,
        log: Any,
        output: Any = None,
        error: str | None = None,
        skip_reason: str | None = None,
        attempt_started: str | None = None,
        staged: dict[str, Any] | None = None,
    ) -> StepState:
        """Commit the step's final state (and its last attempt, if it made one)."""
        if self.records[sid].status.is_terminal:  # recorded already: a step abandoned on cancel
            return self.records[sid].status
        duration = round(time.monotonic() - clock, 6)
        values: dict[str, Any] = {
            "finished_at": now(),
            "duration_s": duration,
            "error": _clean(error),
            "skip_reason": skip_reason,
            "output_json": None,
            "output_hash": None,
            "pending_state": None,
        }
        if state is StepState.SUCCESS:
            try:
                encoded = outputs.encode(output, self.artifacts, f"output of step {sid!r}")
            except StepError as exc:
                state, error = StepState.FAILED, str(exc)
                values["error"] = error
            else:
                # stored canonically, so the hash is taken over exactly the stored text
                values["output_json"] = canonical_json(encoded)
                values["output_hash"] = hashlib.sha256(values["output_json"].encode()).hexdigest()
                values["pending_state"] = canonical_json(staged) if staged else None
        attempt_row = None
        if attempt_started is not None:
            attempt_row = self._attempt_row(sid, attempt_started, state, values["error"])
        self._transition(sid, state, attempt_row, **values)
        if state is StepState.SUCCESS:
            if self.setup.dry_run:
                self._preview_files(sid, output)
            self.ctx.set_output(sid, output)
            log.info("step.succeeded", duration_s=duration, attempts=self.records[sid].attempts)
        elif state is StepState.SKIPPED:
            self.ctx.set_null(sid)
            log.info("step.skipped", reason=skip_reason)
        else:
            self.ctx.set_null(sid)
            self._failed_steps.append(sid)
            log.error("step.failed", error=values["error"], attempts=self.records[sid].attempts)
        self._emit(sid, error=values["error"], skip_reason=skip_reason, duration_s=duration)
        return state

    def _pointer(self, sid: str) -> str:
        i = self.position[sid]
        main = len(self.valid.main_ids)
        return f"/steps/{i}" if i < main else f"/on_failure/{i - main}"

    def _preview_files(self, sid: str, output: Any) -> None:
        """In a dry run, copy the files a step made (its artifacts: a PDF, a page) into the preview
        folder as ``STEP_ID/NAME``, so they can be opened without digging in the artifact store."""
        if self.setup.preview_dir is None:
            return
        for ref in _artifact_refs(output):
            name = Path(str(ref.get("name") or "")).name or ref["sha256"][:16]
            target = self.setup.preview_dir / sid / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ref["path"], target)
            except OSError as exc:  # a convenience copy: never a reason to fail the step
                self.log.warning("step.preview_file_failed", step_id=sid, file=name, error=str(exc))

    def _write_preview(self, sid: str, result: Any) -> None:
        if self.setup.preview_dir is None:
            return
        self.setup.preview_dir.mkdir(parents=True, exist_ok=True)
        encoded = outputs.encode(result, self.artifacts, f"preview of step {sid!r}")
        text = json.dumps(redact.redact_value(encoded), indent=2, ensure_ascii=False, default=str)
        (self.setup.preview_dir / f"{sid}.json").write_text(text + "\n", encoding="utf-8")


async def _call_preview(step: Step, params: Any, ctx: StepContext, spec: StepSpec) -> Any:
    preview = getattr(step, "preview", None)
    if preview is None:
        return {"preview": True, "type": spec.type, "params": mask_secrets(spec.params)}
    if type(step).preview_is_async:
        return await preview(params, ctx)
    return await asyncio.to_thread(preview, params, ctx)


def _check_output(cls: type[Step], result: Any, where: str) -> Any:
    if cls.Output is not None and not isinstance(result, cls.Output):
        try:
            result = cls.Output.model_validate(result)
        except ValidationError as exc:
            raise StepError(
                f"step type {cls.type!r} returned an output that does not match its Output model: "
                + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
                retryable=False,
            ) from None
    return outputs.to_plain(result) if isinstance(result, BaseModel) else result


def _params_error(exc: ValidationError, base: str) -> str:
    parts = []
    for error in exc.errors():
        got = redact.redact_value(error.get("input"))  # before repr, which would escape a secret
        parts.append(f"{pointers.from_loc(error['loc'], base)}: {error['msg']} (got {got!r})")
    return "invalid params after resolving values: " + "; ".join(parts)


_ARTIFACT_KEYS = {"sha256", "path", "media_type", "size"}


def _artifact_refs(value: Any, max_nodes: int = 10_000) -> list[dict[str, Any]]:
    """The artifact references (``ArtifactRef`` as a dict) in a step's output, walked iteratively."""
    found: list[dict[str, Any]] = []
    stack, seen = [value], 0
    while stack and seen < max_nodes:
        item = stack.pop()
        seen += 1
        if isinstance(item, BaseModel):
            item = item.model_dump()
        if isinstance(item, dict):
            if _ARTIFACT_KEYS <= item.keys() and isinstance(item.get("path"), str):
                found.append(item)
            else:
                stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


_NO_LIMIT = contextlib.nullcontext()


def _timeout(seconds: float | None) -> AbstractAsyncContextManager[Any]:
    """``asyncio.timeout(seconds)``, or a context that costs nothing when there is no limit (the
    scheduler waits once per step, most steps have no timeout)."""
    return _NO_LIMIT if seconds is None else asyncio.timeout(seconds)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def backoff_delay(retry: Retry, attempt: int) -> float:
    """Exponential backoff after ``attempt`` failed tries, capped, with full jitter if enabled."""
    delay = min(retry.max_backoff_s, retry.backoff_s * (2 ** (attempt - 1)))
    return random.uniform(0, delay) if retry.jitter else delay


def _clean(text: str | None) -> str | None:
    return redact.redact(text) if text else text
