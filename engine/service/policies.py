"""Policy actions: create, update, read, list, archive, diff, validate and plan a policy.

A policy created here lives in the registry (the workspace's database) only; its versions are
the registry's (:mod:`engine.governance.registry`). A policy whose latest version came from a
file that still exists (a folder given to ``engine server``, a file ``engine run`` ran) is
*file-backed*: it is changed by editing the file, and refused here with :class:`Conflict`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import Conflict, NotFound, PolicyError, Problem
from ..governance import approval, audit, registry
from ..governance.tables import policy_archive
from ..validate import ValidPolicy, load_document, validate_document, with_lines
from .access import Caller, require
from .workspace import Workspace

API_SOURCE = "api"


def parse(body: str | bytes | dict[str, Any], ws: Workspace) -> ValidPolicy:
    """A policy document (JSON text, or already parsed) validated, or a PolicyError whose problems
    carry the pointer, and the line and column: in the text given, or, for a parsed document, in
    the document printed as JSON with 2-space indentation (as ``get_policy`` shows it)."""
    if isinstance(body, dict):
        try:
            return validate_document(body, None, ws.config)
        except PolicyError as exc:
            raise with_lines(exc, json.dumps(body, indent=2, ensure_ascii=False)) from None
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    doc = load_document(text, None)
    if not isinstance(doc, dict):
        raise PolicyError([Problem("", "a policy is a JSON object", hint='{"id": ..., "steps": [...]}')])
    try:
        return validate_document(doc, None, ws.config)
    except PolicyError as exc:
        raise with_lines(exc, text) from None


def problems_of(body: str | bytes | dict[str, Any], ws: Workspace) -> list[Problem]:
    """Every problem of a document (none: it is valid). Records nothing."""
    try:
        parse(body, ws)
    except PolicyError as exc:
        return list(exc.problems)
    return []


def validate(ws: Workspace, caller: Caller, body: str | bytes | dict[str, Any]) -> dict[str, Any]:
    require(caller, "read")
    try:
        valid = parse(body, ws)
    except PolicyError as exc:
        return {"valid": False, "id": None, "problems": [_problem(p) for p in exc.problems]}
    return {
        "valid": True,
        "id": valid.id,
        "hash": valid.hash,
        "approval_hash": registry.approval_hash(valid.document),
        "problems": [],
    }


def _problem(p: Problem) -> dict[str, Any]:
    return {"pointer": p.pointer, "line": p.line, "column": p.column, "message": p.message, "hint": p.hint}


def problem_dicts(problems: list[Problem]) -> list[dict[str, Any]]:
    return [_problem(p) for p in problems]


# -- reading --------------------------------------------------------------------------------------


def archived(ws: Workspace, policy_id: str) -> bool:
    with ws.store.engine.connect() as conn:
        return (
            conn.execute(sa.select(policy_archive.c.policy_id).where(policy_archive.c.policy_id == policy_id)).first()
            is not None
        )


def archived_ids(ws: Workspace) -> set[str]:
    with ws.store.engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.select(policy_archive.c.policy_id))}


def file_of(version: registry.PolicyVersion) -> Path | None:
    """The file a version came from, when it still exists (the policy is then file-backed)."""
    if version.source.startswith("file:"):
        path = Path(version.source[5:])
        if path.exists():
            return path
    return None


def latest(ws: Workspace, policy_id: str, *, include_archived: bool = False) -> registry.PolicyVersion:
    """The current version of a policy of the workspace (what runs), or :class:`NotFound`."""
    version = registry.get_version(ws.store.engine, policy_id)
    if not include_archived and archived(ws, policy_id):
        raise NotFound(f"no policy {policy_id!r}: it was archived (its history is kept)")
    return version


def _summary(ws: Workspace, version: registry.PolicyVersion, last_runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    state = approval.approval_of(ws.store.engine, version.policy_id, version.approval_hash)
    approved_version = _approved_version(ws, version.policy_id)
    schedule = version.document.get("schedule")
    last = last_runs.get(version.policy_id)
    path = file_of(version)
    return {
        "id": version.policy_id,
        "version": version.version,
        "hash": version.hash,
        "approval_hash": version.approval_hash,
        "approved": state.approved,
        "approved_version": approved_version,
        "title": version.document.get("title") or version.document.get("description"),
        "schedule": schedule_summary(schedule),
        "source": "file" if path else ("mcp" if version.source == "mcp" else "api"),
        "path": str(path) if path else None,
        "created_at": version.created_at,
        "created_by": version.created_by,
        "last_run": last,
    }


def _approved_version(ws: Workspace, policy_id: str) -> int | None:
    hashes = approval.approved_hashes(ws.store.engine, policy_id)
    numbers = [v.version for v in registry.versions(ws.store.engine, policy_id) if v.approval_hash in hashes]
    return max(numbers) if numbers else None


def schedule_summary(schedule: dict[str, Any] | None) -> str | None:
    if not schedule:
        return None
    if schedule.get("cron"):
        when = f"cron {schedule['cron']} ({schedule.get('timezone', 'UTC')})"
    elif schedule.get("interval_minutes"):
        when = f"every {schedule['interval_minutes']} min"
    elif schedule.get("window_time"):
        when = f"daily at {schedule['window_time']} UTC"
    elif schedule.get("interval_seconds"):
        when = f"every {schedule['interval_seconds']} s"
    else:
        when = "scheduled"
    return when if schedule.get("enabled", True) else f"{when}, disabled"


def _last_runs(ws: Workspace, policy_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The newest run of each policy (one indexed lookup per policy, whatever the history's length)."""
    from ..store import runs

    if policy_ids is None:
        policy_ids = [v.policy_id for v in registry.latest_versions(ws.store.engine)]
    out: dict[str, dict[str, Any]] = {}
    with ws.store.engine.connect() as conn:
        for policy_id in policy_ids:
            row = conn.execute(
                sa.select(runs.c.id, runs.c.status, runs.c.started_at, runs.c.trigger)
                .where(runs.c.policy_id == policy_id)
                .order_by(runs.c.started_at.desc(), runs.c.id.desc())
                .limit(1)
            ).first()
            if row is not None:
                out[policy_id] = {
                    "run_id": row.id,
                    "status": row.status,
                    "started_at": row.started_at,
                    "trigger": row.trigger,
                }
    return out


def list_policies(ws: Workspace, caller: Caller) -> list[dict[str, Any]]:
    """Every policy of the workspace (not archived): its latest version, approval, schedule, last run."""
    require(caller, "read")
    hidden = archived_ids(ws)
    shown = [v for v in registry.latest_versions(ws.store.engine) if v.policy_id not in hidden]
    last_runs = _last_runs(ws, [v.policy_id for v in shown])
    return [_summary(ws, version, last_runs) for version in shown]


def get_policy(ws: Workspace, caller: Caller, policy_id: str, version: int | None = None) -> dict[str, Any]:
    require(caller, "read")
    newest = latest(ws, policy_id)
    chosen = registry.get_version(ws.store.engine, policy_id, version) if version is not None else newest
    out = _summary(ws, newest, _last_runs(ws, [policy_id]))
    state = approval.approval_of(ws.store.engine, policy_id, chosen.approval_hash)
    out.update(
        {
            "version": chosen.version,
            "latest_version": newest.version,
            "hash": chosen.hash,
            "approval_hash": chosen.approval_hash,
            "approved": state.approved,
            "approval": state.to_dict(),
            "document": chosen.document,
            "created_at": chosen.created_at,
            "created_by": chosen.created_by,
        }
    )
    return out


def versions(ws: Workspace, caller: Caller, policy_id: str) -> list[dict[str, Any]]:
    require(caller, "read")
    current = latest(ws, policy_id).version
    hashes = approval.approved_hashes(ws.store.engine, policy_id)
    return [
        {**v.to_dict(), "approved": v.approval_hash in hashes, "current": v.version == current}
        for v in registry.versions(ws.store.engine, policy_id)
    ]


def diff(ws: Workspace, caller: Caller, policy_id: str, old: int | None, new: int | None) -> dict[str, Any]:
    """The unified diff of the canonical JSON of two versions (default: the latest against the one before)."""
    require(caller, "read")
    newest = latest(ws, policy_id)
    to_version = registry.get_version(ws.store.engine, policy_id, new) if new is not None else newest
    if old is not None:
        from_version: registry.PolicyVersion | None = registry.get_version(ws.store.engine, policy_id, old)
    else:
        from_version = (
            registry.get_version(ws.store.engine, policy_id, to_version.version - 1) if to_version.version > 1 else None
        )
    return {
        "policy_id": policy_id,
        "from": from_version.version if from_version else None,
        "to": to_version.version,
        "same_approval_hash": bool(from_version and from_version.approval_hash == to_version.approval_hash),
        "diff": registry.diff(from_version, to_version),
    }


# -- writing --------------------------------------------------------------------------------------


def record(ws: Workspace, caller: Caller, valid: ValidPolicy, source: str) -> dict[str, Any]:
    version = registry.record_version(
        ws.store.engine, valid.document, actor=caller.actor, source=source, config=ws.config, on_purpose=True
    )
    if archived(ws, valid.id):  # recording a version brings an archived policy back
        with ws.store.engine.begin() as conn:
            conn.execute(policy_archive.delete().where(policy_archive.c.policy_id == valid.id))
            audit.append(conn, caller.actor, "policy.restored", valid.id, {"version": version.version})
    state = approval.approval_of(ws.store.engine, version.policy_id, version.approval_hash)
    return {
        "id": version.policy_id,
        "version": version.version,
        "hash": version.hash,
        "approval_hash": version.approval_hash,
        "approved": state.approved,
        "new": version.new,
        "problems": [],
    }


def refuse_file_backed(ws: Workspace, policy_id: str, what: str = "it") -> None:
    try:
        version = registry.get_version(ws.store.engine, policy_id)
    except NotFound:
        return
    path = file_of(version)
    if path is not None:
        raise Conflict(
            f"policy {policy_id!r} is file-backed ({path}): to change {what}, edit that file; the server records "
            "the new version when it sees the change"
        )


def create_policy(
    ws: Workspace, caller: Caller, body: str | bytes | dict[str, Any], source: str = API_SOURCE
) -> dict[str, Any]:
    """Validate and record a new policy (an invalid document is recorded nowhere: PolicyError).

    An id the workspace already has is a :class:`Conflict` (update it instead), unless it was
    archived: then this version brings it back."""
    require(caller, "write")
    valid = parse(body, ws)
    try:
        registry.get_version(ws.store.engine, valid.id)
    except NotFound:
        pass
    else:
        if not archived(ws, valid.id):
            refuse_file_backed(ws, valid.id)
            raise Conflict(f"policy {valid.id!r} exists: PUT /api/v1/policies/{valid.id} records a new version of it")
    return record(ws, caller, valid, source)


def update_policy(
    ws: Workspace, caller: Caller, policy_id: str, body: str | bytes | dict[str, Any], source: str = API_SOURCE
) -> dict[str, Any]:
    """Record a new version of an existing policy (the same content again returns its version)."""
    require(caller, "write")
    latest(ws, policy_id)
    refuse_file_backed(ws, policy_id)
    valid = parse(body, ws)
    if valid.id != policy_id:
        raise PolicyError(
            [
                Problem(
                    "/id",
                    f"the document's id {valid.id!r} is not the policy's id {policy_id!r}",
                    hint=f'"id": "{policy_id}"',
                )
            ]
        )
    return record(ws, caller, valid, source)


def archive_policy(ws: Workspace, caller: Caller, policy_id: str) -> dict[str, Any]:
    """Hide a policy from lists and schedules; its versions, runs and audit entries are kept."""
    require(caller, "write")
    version = latest(ws, policy_id)
    refuse_file_backed(ws, policy_id)
    stamp = audit.utc_now()
    with ws.store.engine.begin() as conn:
        conn.execute(policy_archive.insert().values(policy_id=policy_id, archived_at=stamp, archived_by=caller.actor))
        audit.append(conn, caller.actor, "policy.archived", policy_id, {"version": version.version})
    return {"id": policy_id, "archived": True, "archived_at": stamp, "version": version.version}


def plan(
    ws: Workspace, caller: Caller, policy_id: str, params: dict[str, Any] | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """What a run of the latest version would do, layer by layer, and its approval hash and state."""
    from ..plan import make_plan

    require(caller, "read")
    version = latest(ws, policy_id)
    valid = validate_document(version.document, None, ws.config)
    values, missing = _plan_params(valid, params or {})
    result = make_plan(valid, values, dry_run)
    result.approval = approval.approval_of(ws.store.engine, policy_id, version.approval_hash).to_dict()
    return {**result.to_dict(), "version": version.version, "params_missing": missing}


def _plan_params(valid: ValidPolicy, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The params to plan with: as a run would take them, or, when a required one is not given,
    the defaults (a ``skip_if`` reading a missing one is shown as not known to skip)."""
    from ..api import run_params

    try:
        return run_params(valid, params=params), []
    except PolicyError:
        declared = valid.policy.params
        values = {name: spec.default for name, spec in declared.items() if spec.default is not None}
        values.update({k: v for k, v in params.items() if k in declared})
        return values, sorted(name for name in declared if name not in values)


def plan_document(
    ws: Workspace, caller: Caller, body: str | bytes | dict[str, Any], params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The plan of a document that is not recorded (invalid: PolicyError), with its approval hash."""
    from ..api import run_params
    from ..plan import make_plan

    require(caller, "read")
    valid = parse(body, ws)
    result = make_plan(valid, run_params(valid, params=params or {}))
    digest = registry.approval_hash(valid.document)
    result.approval = approval.approval_of(ws.store.engine, valid.id, digest).to_dict()
    return result.to_dict()


def valid_latest(ws: Workspace, policy_id: str) -> tuple[registry.PolicyVersion, ValidPolicy]:
    """The latest version of a policy and its validated form (with the file's path when file-backed)."""
    version = latest(ws, policy_id)
    path = file_of(version)
    return version, validate_document(version.document, path, ws.config)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def document_text(version: registry.PolicyVersion) -> str:
    return json.dumps(version.document, indent=2, ensure_ascii=False)
