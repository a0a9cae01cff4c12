"""Starting, resuming and reading runs: the library API the CLI (and later the scheduler) call."""

from __future__ import annotations

import datetime as dt
import difflib
import json
import secrets
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import graph as graphs
from . import outputs
from .config import EngineConfig
from .errors import NotFound, PolicyError, ResumeError, UsageError
from .logs import get_logger
from .params import check_params, coerce_param
from .policy import sha256_of
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
    run_attempt: int = 1  # the run attempt (1, or the resume) in which the step last ran
    kept: bool = False  # a resume kept this step's earlier result instead of running it

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
            "run_attempt": self.run_attempt,
            "kept": self.kept,
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
    policy_path: str | None = None
    # the file at policy_path differs now from the policy the run recorded (edited since)
    policy_file_changed: bool = False
    resumes: list[dict[str, Any]] = field(default_factory=list)
    actor: str | None = None
    policy_version: int | None = None
    # {"hash", "approved", "approved_by", "approved_at"}: the approval of the version the run used
    approval: dict[str, Any] | None = None

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
            "policy_path": self.policy_path,
            "policy_file_changed": self.policy_file_changed,
            "resumes": self.resumes,
            "actor": self.actor,
            "policy_version": self.policy_version,
            "approval": self.approval,
            "steps": [s.to_dict() for s in self.steps],
        }

    def resume_command(self) -> str:
        """What to type to resume this run: with ``--policy`` when its file was edited since."""
        if self.policy_file_changed and self.policy_path:
            return f"engine resume {self.run_id} --policy {shlex.quote(_display_path(self.policy_path))}"
        return f"engine resume {self.run_id}"


@dataclass
class ResumePlan:
    """What ``engine resume`` will do, worked out before anything is claimed (:func:`plan_resume`).

    - ``changed``: steps whose definition differs from what the run recorded (new steps too);
    - ``rerun``: steps named with ``--rerun``;
    - ``kept``: steps whose earlier result is kept (not run again);
    - ``kept_side_effects``: kept steps with side effects that changed or are downstream of a
      changed step: what they did stays as it was (name them with ``--rerun`` to run them again);
    - ``policy_file_changed``: without ``--policy``, the run's policy file whose content now
      differs from the recorded policy the resume will use (the edits are not used).
    """

    run_id: str
    attempt: int
    valid: ValidPolicy
    policy_source: str
    changed: list[str]
    rerun: list[str]
    kept: list[str]
    kept_side_effects: list[str]
    policy_file_changed: str | None
    _kept_values: dict[str, tuple[StepState, Any]] = field(default_factory=dict, repr=False)
    _resets: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _row: dict[str, Any] = field(default_factory=dict, repr=False)

    def warnings(self) -> list[str]:
        """What a person should know before the resume runs, one sentence each."""
        out = []
        if self.policy_file_changed:
            shown = _display_path(self.policy_file_changed)
            out.append(
                f"{shown} has changed since run {self.run_id} started; this resume uses the policy as the run "
                f"recorded it, not your edits. To resume with the edited file: "
                f"engine resume {self.run_id} --policy {shlex.quote(shown)}"
            )
        if self.kept_side_effects:
            many = len(self.kept_side_effects) > 1
            names = ", ".join(self.kept_side_effects)
            flags = " ".join(f"--rerun {sid}" for sid in self.kept_side_effects)
            out.append(
                f"side-effect step{'s' if many else ''} {names} succeeded before and {'are' if many else 'is'} kept, "
                f"though {'they' if many else 'it'} changed or depend{'' if many else 's'} on a changed step "
                f"({', '.join(self.changed)}): what {'they' if many else 'it'} did is not redone with the new "
                f"data. To run {'them' if many else 'it'} again, add {flags}"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "attempt": self.attempt,
            "policy_source": self.policy_source,
            "changed": self.changed,
            "rerun": self.rerun,
            "kept": self.kept,
            "kept_side_effects": self.kept_side_effects,
            "policy_file_changed": self.policy_file_changed,
            "warnings": self.warnings(),
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


@dataclass
class PreparedRun:
    """A run that passed the governance gate and is recorded (RUNNING), not yet executed.

    :func:`prepare_run` and :func:`prepare_resume` make one without awaiting anything, so a
    server can answer "accepted" (or the refusal) at once and execute it later.
    """

    store: Store
    setup: RunSetup
    admission: Any
    finish_details: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.setup.run_id

    async def execute(self, on_runner: Callable[[Runner], None] | None = None) -> RunResult:
        from .governance import gate

        await _execute(self.setup, on_runner)
        result = get_run(self.store, self.run_id)
        gate.finished(self.store.engine, self.admission, self.run_id, result.status, **self.finish_details)
        return result


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
    actor: str | None = None,
    version_source: str | None = None,
    approval_default: bool = False,
) -> RunResult:
    """Validate, record and execute a policy; return the finished run.

    ``config`` defaults to :meth:`EngineConfig.load`; ``scheduled_for`` is the slot a scheduled
    run was started for (UTC ISO 8601), available to steps as ``ctx.run.scheduled_for``.

    Governance comes first (:mod:`engine.governance.gate`): the policy's content is recorded as a
    version (``version_source``, default ``file:<path>`` or ``api``), and a real run of an
    unapproved version (with ``[governance] require_approval``; ``approval_default`` when unset)
    or over the ``runs_per_hour`` quota raises :class:`NotApproved` / :class:`QuotaExceeded`
    (exit code 4) before anything is recorded as started. ``actor`` defaults to
    :func:`engine.governance.current_actor`.
    """
    prepared = prepare_run(
        source,
        store=store,
        params=params,
        param_strings=param_strings,
        dry_run=dry_run,
        trigger=trigger,
        observer=observer,
        run_id=run_id,
        config=config,
        scheduled_for=scheduled_for,
        actor=actor,
        version_source=version_source,
        approval_default=approval_default,
    )
    return await prepared.execute(on_runner)


def prepare_run(
    source: str | Path | ValidPolicy,
    *,
    store: Store,
    params: Mapping[str, Any] = {},
    param_strings: Mapping[str, str] = {},
    dry_run: bool = False,
    trigger: str = "api",
    observer: Observer | None = None,
    run_id: str | None = None,
    config: EngineConfig | None = None,
    scheduled_for: str | None = None,
    actor: str | None = None,
    version_source: str | None = None,
    approval_default: bool = False,
) -> PreparedRun:
    """The first half of :func:`run_policy`: validate, pass the gate, record the run as RUNNING."""
    from .governance import current_actor, gate

    config = config if config is not None else EngineConfig.load()
    valid = load_policy(source, config)
    values = run_params(valid, param_strings, params)
    run_id = run_id or new_run_id()
    actor = actor or current_actor()
    admission = gate.admit(
        store.engine,
        config,
        valid.document,
        actor=actor,
        source=version_source or _version_source(valid),
        dry_run=dry_run,
        default_required=approval_default,
    )
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
            "actor": actor,
        },
        _step_rows(valid),
    )
    gate.started(store.engine, admission, run_id, trigger=trigger, dry_run=dry_run, attempt=1)
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
        actor=actor,
    )
    return PreparedRun(store, setup, admission, {"dry_run": dry_run})


def _governance_view(store: Store, row: dict[str, Any]) -> dict[str, Any]:
    """The run's policy version and its approval now (runs recorded before versions existed: none)."""
    from .governance import approval, registry

    version = registry.get_version_by_hash(store.engine, row["policy_id"], row["policy_hash"])
    if version is None:
        return {"policy_version": None, "approval": None}
    state = approval.approval_of(store.engine, version.policy_id, version.approval_hash)
    return {"policy_version": version.version, "approval": state.to_dict()}


def _version_source(valid: ValidPolicy) -> str:
    return f"file:{valid.path.resolve()}" if valid.path else "api"


def plan_resume(
    run_id: str,
    *,
    store: Store,
    policy_path: str | Path | None = None,
    rerun: Sequence[str] = (),
    config: EngineConfig | None = None,
) -> ResumePlan:
    """Work out what resuming ``run_id`` would do, and refuse what cannot be resumed; claims nothing.

    ``policy_path`` is an edited policy file to resume with (its changed steps and their
    dependents run again); ``rerun`` names steps to run again although their result would be kept
    (a side-effect step downstream of a change), with what depends on them.
    """
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
    file_changed = None
    if policy_path is not None:
        valid = validate_file(policy_path, config)
        if valid.id != row["policy_id"]:
            raise ResumeError(
                f"{policy_path}: policy id {valid.id!r} does not match run {run_id}'s policy {row['policy_id']!r}"
            )
        source = str(Path(policy_path).resolve())
    else:
        stored_path = Path(row["policy_path"]) if row["policy_path"] else None
        valid = validate_document(json.loads(row["policy_json"]), stored_path, config)
        source = "recorded"
        if policy_file_changed(row):
            file_changed = row["policy_path"]
    unknown = [sid for sid in rerun if sid not in valid.main_set]
    if unknown:
        raise UsageError(
            "; ".join(
                f"--rerun {sid!r}: no such step in policy {valid.id!r}" + _did_you_mean(sid, valid.main_ids)
                for sid in unknown
            )
        )
    rows = {r["step_id"]: r for r in store.get_steps(run_id)}
    changed = [
        sid for sid in valid.main_ids if sid not in rows or rows[sid]["definition_hash"] != valid.definition_hashes[sid]
    ]
    forced = list(dict.fromkeys(rerun))
    kept, resets = _plan_steps(valid, rows, store, set(changed), set(forced))
    touched = graphs.downstream(valid.graph, set(changed))  # the changed steps and their dependents
    kept_side_effects = [
        sid
        for sid in valid.main_ids
        if sid in touched and sid in kept and kept[sid][0] is StepState.SUCCESS and rows[sid]["side_effects"]
    ]
    return ResumePlan(
        run_id=run_id,
        attempt=row["attempt"] + 1,
        valid=valid,
        policy_source=source,
        changed=changed,
        rerun=forced,
        kept=[sid for sid in valid.main_ids if sid in kept],
        kept_side_effects=kept_side_effects,
        policy_file_changed=file_changed,
        _kept_values=kept,
        _resets=resets,
        _row=row,
    )


async def resume_run(
    run_id: str,
    *,
    store: Store,
    policy_path: str | Path | None = None,
    rerun: Sequence[str] = (),
    observer: Observer | None = None,
    on_runner: Callable[[Runner], None] | None = None,
    config: EngineConfig | None = None,
    actor: str | None = None,
    approval_default: bool = False,
) -> RunResult:
    """Continue a FAILED, PARTIAL or CANCELLED run under the same id, keeping what succeeded.

    The run keeps its trigger and slot; its ``attempt`` goes up by one, and the resume is
    recorded (``run_resumes``) with the policy it used, the changed steps and the ``rerun`` ones.
    See :func:`plan_resume` for ``policy_path`` and ``rerun``. The version it would run passes
    the same governance gate as a new run (approval, ``runs_per_hour``) before anything is claimed.
    """
    prepared = prepare_resume(
        run_id,
        store=store,
        policy_path=policy_path,
        rerun=rerun,
        observer=observer,
        config=config,
        actor=actor,
        approval_default=approval_default,
    )
    return await prepared.execute(on_runner)


def prepare_resume(
    run_id: str,
    *,
    store: Store,
    policy_path: str | Path | None = None,
    rerun: Sequence[str] = (),
    observer: Observer | None = None,
    config: EngineConfig | None = None,
    actor: str | None = None,
    approval_default: bool = False,
) -> PreparedRun:
    """The first half of :func:`resume_run`: plan, pass the gate, claim the run (RUNNING again)."""
    from .governance import current_actor, gate

    config = config if config is not None else EngineConfig.load()
    plan = plan_resume(run_id, store=store, policy_path=policy_path, rerun=rerun, config=config)
    row, valid, run_id, attempt = plan._row, plan.valid, plan.run_id, plan.attempt
    actor = actor or current_actor()
    admission = gate.admit(
        store.engine,
        config,
        valid.document,
        actor=actor,
        source=f"file:{Path(policy_path).resolve()}" if policy_path is not None else _version_source(valid),
        dry_run=bool(row["dry_run"]),
        default_required=approval_default,
    )
    # the run keeps its params; a param the (fixed) policy newly declares takes its default
    stored = json.loads(row["params_json"])
    params = check_params(valid.policy, {k: v for k, v in stored.items() if k in valid.policy.params})
    rows = {r["step_id"] for r in store.get_steps(run_id)}
    new_rows = [r for r in _step_rows(valid) if r["step_id"] not in rows]
    removed = [sid for sid in rows if sid not in valid.position_of]
    run_values: dict[str, Any] = {"policy_json": dumps(valid.document), "policy_hash": valid.hash}
    if policy_path is not None:
        run_values["policy_path"] = plan.policy_source
    # everything that can fail has been checked: only now is the run claimed
    store.claim_resume(
        run_id,
        attempt,
        plan._resets,
        run_values,
        inserts=new_rows,
        deletes=removed,
        positions={sid: i for sid, i in valid.position_of.items()},
        resume={
            "policy_source": plan.policy_source,
            "policy_hash": valid.hash,
            "changed_json": dumps(plan.changed),
            "rerun_json": dumps(plan.rerun),
            "kept_json": dumps(plan.kept),
        },
    )
    for warning in plan.warnings():
        get_logger().bind(run_id=run_id, policy_id=valid.id).info("run.resume_warning", warning=warning)
    preview_dir = Path(row["preview_dir"]) if row["preview_dir"] else None
    trigger = row["trigger"]
    setup = RunSetup(
        store=store,
        valid=valid,
        run_id=run_id,
        params=params,
        run_attempt=attempt,
        dry_run=bool(row["dry_run"]),
        preview_dir=preview_dir,
        observer=observer,
        kept=plan._kept_values,
        run_info=_run_info(
            run_id, valid.id, row["started_at"], bool(row["dry_run"]), attempt, trigger, row["scheduled_for"]
        ),
        config=config,
        actor=actor,
    )
    gate.started(store.engine, admission, run_id, trigger=trigger, dry_run=bool(row["dry_run"]), attempt=attempt)
    return PreparedRun(store, setup, admission, {"dry_run": bool(row["dry_run"]), "attempt": attempt})


def _plan_steps(
    valid: ValidPolicy,
    rows: Mapping[str, Mapping[str, Any]],
    store: Store,
    changed: set[str],
    forced: set[str],
) -> tuple[dict[str, tuple[StepState, Any]], dict[str, dict[str, Any]]]:
    """Which steps keep their result (and their outputs), and which are reset to PENDING.

    A step runs again when it changed, depends on a changed or forced step, or is forced; a
    successful side-effect step keeps its result (even when it changed) unless it is forced."""
    artifacts = store.artifacts()
    rerun = graphs.downstream(valid.graph, changed | forced)
    kept: dict[str, tuple[StepState, Any]] = {}
    resets: dict[str, dict[str, Any]] = {}
    for sid in graphs_order(valid):
        row = rows.get(sid)
        if row is None:
            continue  # a new step: inserted as PENDING
        status = StepState(row["status"])
        upstream_kept = all(dep in kept for dep in valid.deps[sid])
        on_failure = sid not in valid.main_set  # alerts run again if the resumed run fails again
        protected = bool(row["side_effects"]) and sid not in forced
        if status is StepState.SUCCESS and not on_failure and (sid not in rerun or protected):
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


def policy_file_changed(row: Mapping[str, Any]) -> bool:
    """Whether the run's policy file (``runs.policy_path``) now differs from the policy it recorded.

    Compared by content hash (whitespace and key order do not count); a file that is gone is
    not "changed" (there is nothing to resume with), one that no longer parses is."""
    path = row.get("policy_path")
    if not path:
        return False
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        return bool(sha256_of(json.loads(text)) != row["policy_hash"])
    except ValueError:
        return True


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (steps: {', '.join(choices)})"


def _display_path(path: str) -> str:
    """A path relative to the working directory when it is under it (shorter to type)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


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
    raise NotFound(f"no run {run_id!r} in {store.state_dir}{hint}")


def get_run(store: Store, run_id: str) -> RunResult:
    row = require_run(store, run_id)
    attempt = row["attempt"]
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
            run_attempt=s["run_attempt"],
            kept=attempt > 1
            and s["run_attempt"] < attempt
            and s["status"] in (StepState.SUCCESS.value, StepState.SKIPPED.value),
        )
        for s in store.get_steps(row["id"])
    ]
    resumes = [
        {
            "attempt": r["attempt"],
            "resumed_at": r["resumed_at"],
            "policy_source": r["policy_source"],
            "policy_hash": r["policy_hash"],
            "changed": json.loads(r["changed_json"]),
            "rerun": json.loads(r["rerun_json"]),
            "kept": json.loads(r["kept_json"]),
        }
        for r in (store.get_resumes(row["id"]) if attempt > 1 else [])
    ]
    return RunResult(
        run_id=row["id"],
        policy_id=row["policy_id"],
        status=row["status"],
        attempt=attempt,
        dry_run=bool(row["dry_run"]),
        trigger=row["trigger"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        preview_dir=row["preview_dir"],
        steps=steps,
        scheduled_for=row["scheduled_for"],
        policy_path=row["policy_path"],
        policy_file_changed=policy_file_changed(row),
        resumes=resumes,
        actor=row.get("actor"),
        **_governance_view(store, row),
    )
