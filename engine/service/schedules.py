"""Schedule actions (the seed's ``/v1/schedulers``), mapped onto each policy's ``schedule`` block.

Creating, changing, enabling, disabling or deleting a schedule records a new version of the
policy that differs only in ``schedule``: audited (``policy.schedule_changed``), and needing no
new approval, since the approval hash leaves ``schedule`` out. File-backed policies are
scheduled in their file.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import Conflict, NotFound, PolicyError, Problem
from ..schedule import as_schedule, describe, fires_after, is_due, parse_slot, slot_key, zone
from ..store import Store
from ..validate import validate_document
from . import policies
from .access import Caller, require
from .workspace import Workspace

CADENCES = ("cron", "interval_minutes", "interval_hours", "window_time")
FIELDS = (*CADENCES, "timezone", "params", "enabled", "catchup")


def schedule_entry(store: Store, valid: Any, path: str, now: dt.datetime, count: int) -> dict[str, Any]:
    """A scheduled policy as ``engine schedule`` and ``GET /schedules`` show it: its schedule, the
    next ``count`` fires (UTC and local), the last run, whether a slot is overdue, recent skips."""
    schedule = valid.policy.schedule
    entry: dict[str, Any] = {"policy_id": valid.id, "path": path, "schedule": None}
    if schedule is None:
        return entry
    tz = zone(schedule.timezone)
    fires = []
    for fire in fires_after(schedule, now):
        if len(fires) == count:
            break
        fires.append({"utc": slot_key(fire), "local": fire.astimezone(tz).isoformat()})
    slots = store.list_slots(valid.id)
    with_runs = [s for s in slots if s["run_id"] and s["status"] != "SKIPPED"]
    last_run = None
    if with_runs:
        slot = with_runs[-1]
        run = store.get_run(slot["run_id"])
        duration = None
        if run and run["finished_at"]:
            duration = round((parse_slot(run["finished_at"]) - parse_slot(run["started_at"])).total_seconds(), 3)
        last_run = {
            "scheduled_for": slot["scheduled_for"],
            "run_id": slot["run_id"],
            "status": run["status"] if run else slot["status"],
            "duration_s": duration,
        }
    last_slot = parse_slot(slots[-1]["scheduled_for"]) if slots else None
    entry.update(
        schedule=valid.document.get("schedule"),
        description=describe(schedule),
        enabled=schedule.enabled,
        timezone=schedule.timezone,
        next_fires=fires,
        last_run=last_run,
        overdue=is_due(schedule, last_slot, now),
        skipped=[
            {"scheduled_for": s["scheduled_for"], "reason": s["reason"]} for s in slots if s["status"] == "SKIPPED"
        ][-5:],
    )
    return entry


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _block(current: dict[str, Any] | None, changes: dict[str, Any]) -> dict[str, Any]:
    """The policy's new ``schedule`` block: ``current`` with ``changes`` (API fields) applied."""
    block = dict(current or {})
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise PolicyError(
            [Problem(f"/{k}", f"unknown schedule field {k!r}", hint=f"fields: {', '.join(FIELDS)}") for k in unknown]
        )
    given = [k for k in CADENCES if changes.get(k) is not None]
    if len(given) > 1:
        raise PolicyError([Problem(f"/{given[1]}", f"give one of {', '.join(CADENCES)}, not {' and '.join(given)}")])
    if given:
        for key in ("cron", "interval_minutes", "window_time", "interval_seconds"):
            block.pop(key, None)
        if given[0] == "interval_hours":
            hours = changes["interval_hours"]
            if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1:
                raise PolicyError([Problem("/interval_hours", "must be a whole number of hours, at least 1")])
            block["interval_minutes"] = hours * 60
        else:
            block[given[0]] = changes[given[0]]
    for key in ("timezone", "params", "enabled", "catchup"):
        if key in changes and changes[key] is not None:
            block[key] = changes[key]
    if not any(block.get(k) for k in ("cron", "interval_minutes", "window_time", "interval_seconds")):
        raise PolicyError(
            [Problem("", f"a schedule needs one of {', '.join(CADENCES)}", hint='{"cron": "0 7 * * 1-5"}')]
        )
    return block


def _save(
    ws: Workspace, caller: Caller, policy_id: str, schedule: dict[str, Any] | None, source: str = "api"
) -> dict[str, Any]:
    version = policies.latest(ws, policy_id)
    policies.refuse_file_backed(ws, policy_id, "its schedule")
    document = {k: v for k, v in version.document.items() if k != "schedule"}
    if schedule is not None:
        document["schedule"] = schedule
    try:
        valid = validate_document(document, None, ws.config)
    except PolicyError as exc:  # pointers into the schedule block as the API gave it
        raise PolicyError(
            [p.__class__(p.pointer.removeprefix("/schedule"), p.message, p.hint) for p in exc.problems]
        ) from None
    policies.record(ws, caller, valid, source)
    return get_schedule(ws, caller, policy_id) if schedule is not None else {"policy_id": policy_id, "schedule": None}


def preview(
    body: dict[str, Any], current: dict[str, Any] | None = None, count: int = 5, now: dt.datetime | None = None
) -> dict[str, Any]:
    """What a schedule would be, without saving anything: ``body`` (the fields of ``POST`` or
    ``PUT /schedules``) laid over ``current`` (the block it would change, or None for a new one)
    as create and update lay it, with its description and next ``count`` fires in UTC and in its
    time zone. Problems (no cadence, a bad cron, an unknown time zone) raise PolicyError with
    pointers inside the block (``/cron``, ``/timezone``), the parser's own words in the message."""
    from .. import model_errors
    from ..policy import Schedule

    block = _block(current, {k: v for k, v in body.items() if k != "policy_id"})
    schedule, errors = model_errors.validate_literal(block, Schedule.model_validate, Schedule.model_validate_json)
    if errors:
        raise PolicyError(model_errors.problems(errors, Schedule, "", block))
    schedule = as_schedule(schedule)
    tz = zone(schedule.timezone)
    fires = []
    for fire in fires_after(schedule, now or _now()):
        if len(fires) == count:
            break
        fires.append({"utc": slot_key(fire), "local": fire.astimezone(tz).isoformat()})
    return {
        "schedule": block,
        "description": describe(schedule),
        "enabled": schedule.enabled,
        "timezone": schedule.timezone,
        "next_fires": fires,
    }


def create_schedule(ws: Workspace, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    require(caller, "write")
    policy_id = body.get("policy_id")
    if not isinstance(policy_id, str) or not policy_id:
        raise PolicyError([Problem("/policy_id", "the id of the policy to schedule is required")])
    version = policies.latest(ws, policy_id)
    if version.document.get("schedule"):
        raise Conflict(f"policy {policy_id!r} has a schedule: PUT /api/v1/schedules/{policy_id} changes it")
    changes = {k: v for k, v in body.items() if k != "policy_id"}
    return _save(ws, caller, policy_id, _block(None, changes))


def update_schedule(ws: Workspace, caller: Caller, policy_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Change a schedule: any of its fields (``{"enabled": false}`` disables it)."""
    require(caller, "write")
    version = policies.latest(ws, policy_id)
    current = version.document.get("schedule")
    if not current:
        raise NotFound(f"policy {policy_id!r} has no schedule: POST /api/v1/schedules creates one")
    return _save(ws, caller, policy_id, _block(current, {k: v for k, v in body.items() if k != "policy_id"}))


def delete_schedule(ws: Workspace, caller: Caller, policy_id: str) -> dict[str, Any]:
    require(caller, "write")
    version = policies.latest(ws, policy_id)
    if not version.document.get("schedule"):
        raise NotFound(f"policy {policy_id!r} has no schedule")
    return _save(ws, caller, policy_id, None)


def _entry(ws: Workspace, version: Any, now: dt.datetime, count: int) -> dict[str, Any]:
    valid = validate_document(version.document, None, ws.config)
    path = policies.file_of(version)
    entry = schedule_entry(ws.store, valid, str(path) if path else "api", now, count)
    entry["version"] = version.version
    entry["source"] = "file" if path else ("mcp" if version.source == "mcp" else "api")
    return entry


def list_schedules(
    ws: Workspace, caller: Caller, count: int = 5, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    require(caller, "read")
    moment = now or _now()
    hidden = policies.archived_ids(ws)
    return [
        _entry(ws, v, moment, count)
        for v in policies.registry.latest_versions(ws.store.engine)
        if v.policy_id not in hidden and v.document.get("schedule")
    ]


def get_schedule(ws: Workspace, caller: Caller, policy_id: str, count: int = 5) -> dict[str, Any]:
    require(caller, "read")
    version = policies.latest(ws, policy_id)
    if not version.document.get("schedule"):
        raise NotFound(f"policy {policy_id!r} has no schedule")
    return _entry(ws, version, _now(), count)


def schedule_runs(ws: Workspace, caller: Caller, policy_id: str, limit: int = 100) -> dict[str, Any]:
    """The execution history: each slot (newest first) with its run and status, or why it was skipped."""
    require(caller, "read")
    policies.latest(ws, policy_id, include_archived=True)
    slots = ws.store.list_slots(policy_id)
    out = []
    for slot in reversed(slots[-limit:]):
        run = ws.store.get_run(slot["run_id"]) if slot["run_id"] else None
        out.append(
            {
                "scheduled_for": slot["scheduled_for"],
                "run_id": slot["run_id"],
                "status": run["status"] if run else slot["status"],
                "reason": slot["reason"],
                "started_at": run["started_at"] if run else None,
                "finished_at": run["finished_at"] if run else None,
            }
        )
    return {"policy_id": policy_id, "runs": out}


def set_schedule(
    ws: Workspace, caller: Caller, policy_id: str, schedule: dict[str, Any] | None, source: str = "api"
) -> dict[str, Any]:
    """Replace a policy's whole ``schedule`` block (the policy document's own fields), or remove
    it with None: a new version differing only in its schedule."""
    require(caller, "write")
    if schedule is not None and not isinstance(schedule, dict):
        raise PolicyError([Problem("", 'a schedule is an object, e.g. {"cron": "0 7 * * 1-5"}, or null')])
    try:
        return _save(ws, caller, policy_id, schedule, source)
    except PolicyError as exc:  # the pointers as the caller gave the block
        raise PolicyError([p.__class__("/schedule" + p.pointer, p.message, p.hint) for p in exc.problems]) from None


def status(ws: Workspace, caller: Caller, policy_id: str | None = None, recent: int = 10) -> list[dict[str, Any]]:
    """Each scheduled policy (or one) as GET /schedules shows it, with its recent slots: the
    scheduled runs and the skipped slots with their reasons."""
    found = [get_schedule(ws, caller, policy_id)] if policy_id else list_schedules(ws, caller)
    for entry in found:
        entry["recent"] = schedule_runs(ws, caller, entry["policy_id"], recent)["runs"]
    return found
