"""Starting, resuming and reading runs: the library API the CLI (and later the scheduler) call."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import graph as graphs
from . import outputs
from .artifacts import ArtifactStore
from .config import EngineConfig
from .errors import PolicyError, ResumeError, UsageError
from .params import check_params, coerce_param
from .runner import Observer, Runner, RunSetup
from .states import RunState, StepState, check_run
from .store import Store, dumps, now
from .validate import ValidPolicy, validate_document, validate_file


@dataclass
class StepSummary:
    id: str
    status: str
    attempts: int
    duration_s: float | None
    error: str | None
    skip_reason: str | None
    type: str = ""
    phase: str = "main"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "attempts": self.attempts,
            "duration_s": self.duration_s,
            "error": self.error,
            "skip_reason": self.skip_reason,
            "type": self.type,
            "phase": self.phase,
        }


@dataclass
class RunResult:
    """A run as the CLI's ``--json`` prints it."""

    run_id: str
    policy_id: str
    status: str
    attempt: int
    dry_run: bool
    trigger: str
    started_at: str
    finished_at: str | None
    error: str | None
    preview_dir: str | None
    steps: list[StepSummary] = field(default_factory=list)
    scheduled_for: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "policy_id": self.policy_id,
            "status": self.status,
            "attempt": self.attempt,
            "dry_run": self.dry_run,
            "trigger": self.trigger,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "preview_dir": self.preview_dir,
            "scheduled_for": self.scheduled_for,
            "steps": [s.to_dict() for s in self.steps],
        }


def new_run_id() -> str:
    """Sortable and readable: ``20261123T191500-3fa9c1``."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def load_policy(source: str | Path | ValidPolicy, config: EngineConfig | None = None) -> ValidPolicy:
    return source if isinstance(source, ValidPolicy) else validate_file(source, config)


def run_params(
    valid: ValidPolicy, param_strings: Mapping[str, str] = {}, params: Mapping[str, Any] = {}
) -> dict[str, Any]:
    """Declared defaults, overridden by typed ``params`` and by ``--param`` strings (coerced)."""
    merged = dict(params)
    problems = []
    for name, text in param_strings.items():
        try:
            merged[name] = coerce_param(valid.policy, name, text)
        except PolicyError as exc:
            problems += exc.problems
    if problems:
        raise PolicyError(problems, str(valid.path) if valid.path else None)
    try:
        return check_params(valid.policy, merged)
    except PolicyError as exc:
        raise PolicyError(exc.problems, str(valid.path) if valid.path else None) from None


async def run_policy(
    source: str | Path | ValidPolicy,
    *,
    store: Store,
    params: Mapping[str, Any] = {},
    param_strings: Mapping[str, str] = {},
    dry_run: bool = False,
    trigger: str = "api",
    observer: Observer | None = None,
    on_runner: Callable[[Runner], None] | None = None,
    run_id: str | None = None,
    config: EngineConfig | None = None,
    scheduled_for: str | None = None,
) -> RunResult:
    """Validate, record and execute a policy; return the finished run.

    ``config`` defaults to :meth:`EngineConfig.load`; ``scheduled_for`` is the slot a scheduled
    run was started for (UTC ISO 8601), available to steps as ``ctx.run.scheduled_for``.
    """
    config = config if config is not None else EngineConfig.load()
    valid = load_policy(source, config)
    values = run_params(valid, param_strings, params)
    run_id = run_id or new_run_id()
    started_at = now()
    preview_dir = store.state_dir / "runs" / run_id / "preview" if dry_run else None
    store.create_run(
        {
            "id": run_id,
            "policy_id": valid.id,
            "policy_hash": valid.hash,
            "policy_json": dumps(valid.document),
            "policy_path": str(valid.path.resolve()) if valid.path else None,
            "params_json": dumps(values),
            "status": RunState.RUNNING.value,
            "dry_run": dry_run,
            "trigger": trigger,
            "attempt": 1,
            "started_at": started_at,
            "preview_dir": str(preview_dir) if preview_dir else None,
            "scheduled_for": scheduled_for,
        },
        _step_rows(valid),
    )
    setup = RunSetup(
        store=store,
        valid=valid,
        run_id=run_id,
        params=values,
        dry_run=dry_run,
        preview_dir=preview_dir,
        run_info=_run_info(run_id, valid.id, started_at, dry_run, 1, trigger, scheduled_for),
        observer=observer,
        config=config,
    )
    await _execute(setup, on_runner)
    return get_run(store, run_id)


async def resume_run(
    run_id: str,
    *,
    store: Store,
    policy_path: str | Path | None = None,
    observer: Observer | None = None,
    on_runner: Callable[[Runner], None] | None = None,
    config: EngineConfig | None = None,
) -> RunResult:
    """Continue a FAILED, PARTIAL or CANCELLED run under the same id, keeping what succeeded."""
    config = config if config is not None else EngineConfig.load()
    store.mark_interrupted()
    row = require_run(store, run_id)
    run_id = row["id"]  # the caller may have given a unique prefix
    status = RunState(row["status"])
    if status is RunState.SUCCESS:
        raise ResumeError(f"run {run_id} already succeeded: nothing to resume (start a new run with 'engine run')")
    if status is RunState.RUNNING:
        raise ResumeError(f"run {run_id} is still running (pid {row['pid']} on {row['host']}); wait for it or stop it")
    check_run(run_id, status, RunState.RUNNING)
    if policy_path is not None:
        valid = validate_file(policy_path, config)
        if valid.id != row["policy_id"]:
            raise ResumeError(
                f"{policy_path}: policy id {valid.id!r} does not match run {run_id}'s policy {row['policy_id']!r}"
            )
    else:
        stored_path = Path(row["policy_path"]) if row["policy_path"] else None
        valid = validate_document(json.loads(row["policy_json"]), stored_path, config)
    # the run keeps its params; a param the (fixed) policy newly declares takes its default
    stored = json.loads(row["params_json"])
    params = check_params(valid.policy, {k: v for k, v in stored.items() if k in valid.policy.params})
    rows = {r["step_id"]: r for r in store.get_steps(run_id)}
    kept, resets = _plan_resume(valid, rows, store)
    attempt = row["attempt"] + 1
    new_rows = [r for r in _step_rows(valid) if r["step_id"] not in rows]
    removed = [sid for sid in rows if sid not in valid.position_of]
    # everything that can fail has been checked: only now is the run claimed
    store.claim_resume(
        run_id,
        attempt,
        resets,
        {"policy_json": dumps(valid.document), "policy_hash": valid.hash, "trigger": "resume"},
        inserts=new_rows,
        deletes=removed,
        positions={sid: i for sid, i in valid.position_of.items()},
    )
    preview_dir = Path(row["preview_dir"]) if row["preview_dir"] else None
    setup = RunSetup(
        store=store,
        valid=valid,
        run_id=run_id,
        params=params,
        run_attempt=attempt,
        dry_run=bool(row["dry_run"]),
        preview_dir=preview_dir,
        observer=observer,
        kept=kept,
        run_info=_run_info(
            run_id, valid.id, row["started_at"], bool(row["dry_run"]), attempt, "resume", row["scheduled_for"]
        ),
        config=config,
    )
    await _execute(setup, on_runner)
    return get_run(store, run_id)


def _plan_resume(
    valid: ValidPolicy, rows: Mapping[str, Mapping[str, Any]], store: Store
) -> tuple[dict[str, tuple[StepState, Any]], dict[str, dict[str, Any]]]:
    """Which steps keep their result (and their outputs), and which are reset to PENDING."""
    artifacts = ArtifactStore(store.state_dir / "artifacts")
    changed = {
        sid for sid in valid.main_ids if sid not in rows or rows[sid]["definition_hash"] != valid.definition_hashes[sid]
    }
    rerun = graphs.downstream(valid.graph, changed)
    kept: dict[str, tuple[StepState, Any]] = {}
    resets: dict[str, dict[str, Any]] = {}
    for sid in graphs_order(valid):
        row = rows.get(sid)
        if row is None:
            continue  # a new step: inserted as PENDING
        status = StepState(row["status"])
        upstream_kept = all(dep in kept for dep in valid.deps[sid])
        on_failure = sid not in valid.main_set  # alerts run again if the resumed run fails again
        if status is StepState.SUCCESS and not on_failure and (sid not in rerun or row["side_effects"]):
            output = outputs.decode(json.loads(row["output_json"]), artifacts) if row["output_json"] else None
            kept[sid] = (status, output)
        elif (
            status is StepState.SKIPPED
            and sid in valid.main_ids
            and (row["skip_reason"] or "").startswith("skip_if")
            and sid not in rerun
            and upstream_kept
        ):
            kept[sid] = (status, None)
        else:
            resets[sid] = {
                "status": StepState.PENDING.value,
                "error": None,
                "skip_reason": None,
                "started_at": None,
                "finished_at": None,
                "duration_s": None,
                "output_json": None,
                "output_hash": None,
                "pending_state": None,
                "attempts": 0,
                "definition_hash": valid.definition_hashes[sid],
            }
    return kept, resets


def graphs_order(valid: ValidPolicy) -> list[str]:
    """Main steps in a topological order that follows policy order, then on_failure steps."""
    order = [sid for layer in graphs.layers(valid.graph.subgraph(valid.main_ids), valid.main_ids) for sid in layer]
    return order + valid.failure_ids


async def _execute(setup: RunSetup, on_runner: Callable[[Runner], None] | None) -> RunState:
    runner = Runner(setup)
    if on_runner is not None:
        on_runner(runner)
    return await runner.execute()


def _run_info(
    run_id: str,
    policy_id: str,
    started_at: str,
    dry_run: bool,
    attempt: int,
    trigger: str,
    scheduled_for: str | None = None,
) -> dict[str, Any]:
    return {
        "id": run_id,
        "policy_id": policy_id,
        "started_at": started_at,
        "dry_run": dry_run,
        "attempt": attempt,
        "trigger": trigger,
        "scheduled_for": scheduled_for,
    }


def _step_rows(valid: ValidPolicy) -> list[dict[str, Any]]:
    rows = []
    for sid, position in valid.position_of.items():
        rows.append(
            {
                "step_id": sid,
                "position": position,
                "phase": "main" if sid in valid.main_set else "on_failure",
                "type": valid.step_types[sid].type,
                "side_effects": valid.side_effects(sid),
                "status": StepState.PENDING.value,
                "attempts": 0,
                "definition_hash": valid.definition_hashes[sid],
            }
        )
    return rows


def require_run(store: Store, run_id: str) -> dict[str, Any]:
    row = store.get_run(run_id)
    if row is not None:
        return row
    matches = store.find_runs(run_id)
    if len(matches) == 1:
        row = store.get_run(matches[0])
        assert row is not None
        return row
    hint = f" (did you mean {', '.join(matches)}?)" if matches else " (list runs with 'engine runs')"
    raise UsageError(f"no run {run_id!r} in {store.state_dir}{hint}")


def get_run(store: Store, run_id: str) -> RunResult:
    row = require_run(store, run_id)
    steps = [
        StepSummary(
            id=s["step_id"],
            status=s["status"],
            attempts=s["attempts"],
            duration_s=s["duration_s"],
            error=s["error"],
            skip_reason=s["skip_reason"],
            type=s["type"],
            phase=s["phase"],
        )
        for s in store.get_steps(row["id"])
    ]
    return RunResult(
        run_id=row["id"],
        policy_id=row["policy_id"],
        status=row["status"],
        attempt=row["attempt"],
        dry_run=bool(row["dry_run"]),
        trigger=row["trigger"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        preview_dir=row["preview_dir"],
        steps=steps,
        scheduled_for=row["scheduled_for"],
    )
