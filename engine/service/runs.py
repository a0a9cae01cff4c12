"""Run actions: start (or dry-run) a policy, resume, cancel, and read runs, their logs and previews.

Starting and resuming go through :func:`engine.api.prepare_run` / :func:`engine.api.prepare_resume`,
so the governance gate (approval, ``runs_per_hour``) refuses before anything is accepted, and the
run itself is a normal recorded run executed by ``launch`` (the server's background executor).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..api import PreparedRun, get_run, prepare_resume, prepare_run, require_run
from ..errors import Conflict, NotFound, UsageError
from ..states import RunState
from . import policies
from .access import Caller, require
from .workspace import Workspace

Launch = Callable[[PreparedRun], None]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
LIST_COLUMNS = (
    "id",
    "policy_id",
    "status",
    "trigger",
    "dry_run",
    "attempt",
    "started_at",
    "finished_at",
    "scheduled_for",
    "actor",
    "error",
)


def start_run(
    ws: Workspace,
    caller: Caller,
    policy_id: str,
    launch: Launch,
    *,
    params: dict[str, Any] | None = None,
    dry_run: bool = False,
    trigger: str = "api",
    scheduled_for: str | None = None,
) -> dict[str, Any]:
    """Start a run (or a dry run) of the policy's latest version; returns at once with its id.

    A real run of an unapproved version raises :class:`NotApproved`, one over ``runs_per_hour``
    :class:`QuotaExceeded`; bad params a :class:`PolicyError`. Nothing is recorded then.

    ``scheduled_for`` makes it a run for that schedule slot (ISO 8601): its deliveries are then
    idempotent with any other run for the slot (``docs/steps/send.md#idempotency``)."""
    require(caller, "run")
    version, valid = policies.valid_latest(ws, policy_id)
    slot = utc_text(scheduled_for, "scheduled_for") if scheduled_for else None
    if valid.policy.schedule is not None and params is None and trigger == "schedule":
        params = dict(valid.policy.schedule.params)
    prepared = prepare_run(
        valid,
        store=ws.store,
        params=params or {},
        dry_run=dry_run,
        trigger=trigger,
        config=ws.config,
        actor=caller.actor,
        scheduled_for=slot,
        version_source=version.source,
        approval_default=ws.approval_default,
    )
    launch(prepared)
    return {
        "run_id": prepared.run_id,
        "policy_id": policy_id,
        "version": version.version,
        "dry_run": dry_run,
        "attempt": 1,
        "scheduled_for": slot,
        "status": RunState.RUNNING.value,
    }


def resume(ws: Workspace, caller: Caller, run_id: str, launch: Launch) -> dict[str, Any]:
    """Resume a FAILED, PARTIAL or CANCELLED run of the workspace (same gate as a new run)."""
    require(caller, "run")
    row = run_row(ws, run_id)
    prepared = prepare_resume(
        row["id"], store=ws.store, config=ws.config, actor=caller.actor, approval_default=ws.approval_default
    )
    launch(prepared)
    version = prepared.admission.version
    return {
        "run_id": prepared.run_id,
        "policy_id": version.policy_id,
        "version": version.version,
        "dry_run": prepared.setup.dry_run,
        "attempt": prepared.setup.run_attempt,
        "status": RunState.RUNNING.value,
    }


def cancel(ws: Workspace, caller: Caller, run_id: str, cancel_here: Callable[[str, str], bool]) -> dict[str, Any]:
    """Cancel a running run that this process executes (``cancel_here(run_id, reason)``)."""
    require(caller, "run")
    row = run_row(ws, run_id)
    if row["status"] != RunState.RUNNING.value:
        raise Conflict(f"run {row['id']} is {row['status']}: only a RUNNING run can be cancelled")
    if not cancel_here(row["id"], f"cancelled by {caller.actor}"):
        raise Conflict(
            f"run {row['id']} is executed by another process (pid {row['pid']} on {row['host']}): stop it there"
        )
    return {"run_id": row["id"], "cancelling": True}


# -- reading --------------------------------------------------------------------------------------


def latest_slot(ws: Workspace, policy_id: str) -> str | None:
    """The policy's most recent schedule slot (its last fire time up to now), or None without a schedule."""
    import datetime as dt

    from ..schedule import previous_fire, slot_key

    _, valid = policies.valid_latest(ws, policy_id)
    schedule = valid.policy.schedule
    if schedule is None:
        return None
    fire = previous_fire(schedule, dt.datetime.now(dt.UTC))
    return slot_key(fire) if fire else None


def run_row(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The run's row (by its id or a unique prefix), or NotFound naming the workspace (not a path)."""
    try:
        return require_run(ws.store, run_id)
    except NotFound:
        matches = ws.store.find_runs(run_id)
        hint = f" (did you mean {', '.join(matches[:5])}?)" if matches else ""
        raise NotFound(f"no run {run_id!r} in workspace {ws.name}{hint}") from None


def utc_text(value: str | None, name: str) -> str | None:
    """An ISO 8601 time with any offset (``Z``; none: UTC) as the stored UTC form, to compare with.

    A ``+`` left unencoded in a query string arrives as a space: ``...T07:00:00 01:00`` is read
    as ``+01:00``."""
    if not value:
        return None
    import datetime as dt

    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", value.strip())
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{name} {value!r}: an ISO 8601 time, e.g. 2026-12-01T07:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def encode_cursor(row: dict[str, Any]) -> str:
    raw = json.dumps([row["started_at"], row["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_at, run_id = json.loads(raw)
        return str(started_at), str(run_id)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cursor {cursor!r} is not one this server gave (use next_cursor of the last page)") from exc


def list_runs(
    ws: Workspace,
    caller: Caller,
    *,
    policy: str | None = None,
    status: str | None = None,
    trigger: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of runs, newest first: ``{"runs": [...], "next_cursor": ...}`` (None on the last page)."""
    require(caller, "read")
    if not 1 <= limit <= 500:
        raise UsageError(f"limit {limit}: between 1 and 500")
    if status and status.upper() not in {s.value for s in RunState}:
        raise UsageError(f"status {status!r}: one of {', '.join(s.value for s in RunState)}")
    rows = ws.store.list_runs(
        policy_id=policy,
        status=status,
        limit=limit + 1,
        trigger=trigger,
        since=utc_text(since, "since"),
        until=utc_text(until, "until"),
        before=decode_cursor(cursor) if cursor else None,
        columns=LIST_COLUMNS,
    )
    page = rows[:limit]
    out = [
        {**{k: r[k] for k in LIST_COLUMNS if k != "id"}, "run_id": r["id"], "dry_run": bool(r["dry_run"])} for r in page
    ]
    return {"runs": out, "next_cursor": encode_cursor(page[-1]) if len(rows) > limit else None}


def show(ws: Workspace, caller: Caller, run_id: str) -> dict[str, Any]:
    """The run as ``engine show --json`` prints it, with its previews listed."""
    require(caller, "read")
    result = get_run(ws.store, run_row(ws, run_id)["id"]).to_dict()
    result["previews"] = [p.name for p in _preview_files(result.get("preview_dir"))]
    result["artifacts"] = artifacts_of(ws, result["run_id"])
    return result


def step_outputs(ws: Workspace, run_id: str) -> dict[str, Any]:
    """Each step's recorded output (parsed), by step id: for faces that summarise a run."""
    out: dict[str, Any] = {}
    for step in ws.store.get_steps(run_row(ws, run_id)["id"]):
        if step.get("output_json"):
            try:
                out[step["step_id"]] = json.loads(step["output_json"])
            except ValueError:
                continue
    return out


def artifacts_of(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    """The files the run's steps stored (PDF, HTML, charts): each with its step, name, media type,
    size and the URL to download it (``/api/v1/artifacts/{sha256}``)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(value: Any, step_id: str) -> None:
        if isinstance(value, dict):
            sha = value.get("sha256")
            if isinstance(sha, str) and _SHA256.match(sha) and "media_type" in value:
                found.setdefault(
                    sha,
                    {
                        "step_id": step_id,
                        "name": value.get("name"),
                        "sha256": sha,
                        "media_type": value.get("media_type"),
                        "size": value.get("size"),
                        "url": f"/api/v1/artifacts/{sha}",
                    },
                )
            for item in value.values():
                walk(item, step_id)
        elif isinstance(value, list):
            for item in value:
                walk(item, step_id)

    for step in ws.store.get_steps(run_id):
        if step.get("output_json"):
            try:
                walk(json.loads(step["output_json"]), step["step_id"])
            except ValueError:
                continue
    return list(found.values())


def status_of(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The run and step states (what the live events compare)."""
    row = run_row(ws, run_id)
    steps = {
        s["step_id"]: {
            "status": s["status"],
            "attempts": s["attempts"],
            "error": s["error"],
            "skip_reason": s["skip_reason"],
        }
        for s in ws.store.get_steps(row["id"])
    }
    return {"run_id": row["id"], "status": row["status"], "error": row["error"], "steps": steps}


def _preview_files(preview_dir: str | None) -> list[Path]:
    if not preview_dir:
        return []
    root = Path(preview_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file())


def preview(ws: Workspace, caller: Caller, run_id: str, name: str) -> Path:
    """A dry run's preview file by name (as listed in the run's ``previews``)."""
    require(caller, "read")
    row = run_row(ws, run_id)
    for path in _preview_files(row["preview_dir"]):
        if path.name == name:
            return path
    known = ", ".join(p.name for p in _preview_files(row["preview_dir"])) or "none"
    raise NotFound(f"run {row['id']} has no preview {name!r} (its previews: {known})")


def logs(ws: Workspace, caller: Caller, run_id: str, log_file: Path | None) -> list[dict[str, Any]]:
    """The run's log events (JSON lines of ``logs/engine.log`` whose ``run_id`` is this run)."""
    require(caller, "read")
    row = run_row(ws, run_id)
    if log_file is None or not log_file.exists():
        return []
    wanted = row["id"]
    out = []
    with log_file.open("rb") as handle:
        for line in handle:
            if wanted.encode() not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("run_id") == wanted:
                out.append(event)
    return out


def artifact(ws: Workspace, caller: Caller, sha256: str) -> tuple[Path, str]:
    """An artifact a run of this workspace produced, with its media type."""
    require(caller, "read")
    digest = sha256.lower()
    if not _SHA256.match(digest):
        raise NotFound(f"no artifact {sha256!r}: an artifact is named by its SHA-256 (64 hex digits)")
    path = ws.store.artifacts().path_for(digest)
    if not path.is_file():
        raise NotFound(f"no artifact {digest} in this workspace")
    return path, media_type(path)


def media_type(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(512)
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "text/html; charset=utf-8"
    if text.startswith(b"<svg") or b"<svg" in text[:200]:
        return "image/svg+xml"
    if text.startswith((b"{", b"[")):
        return "application/json"
    if path.suffix == ".eml" or text.startswith((b"from:", b"mime-version:", b"content-type:")):
        return "message/rfc822"
    try:
        head.decode("utf-8")
        return "text/plain; charset=utf-8"
    except UnicodeDecodeError:
        return "application/octet-stream"
