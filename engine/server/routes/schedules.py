"""/api/v1/schedules: the seed's schedulers, mapped onto each policy's ``schedule`` block."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from ...service import schedules
from ..auth import Session, current
from ..models import ScheduleIn

router = APIRouter(prefix="/schedules", tags=["schedules"])


@router.post("", status_code=201)
def create(body: ScheduleIn, response: Response, s: Session = Depends(current)) -> dict[str, Any]:
    """Schedule a policy: a new version differing only in ``schedule`` (audited, no re-approval)."""
    out = schedules.create_schedule(s.ws, s.caller, body.changes())
    response.headers["Location"] = f"/api/v1/schedules/{out['policy_id']}"
    return out


@router.get("")
def list_all(count: int = Query(5, ge=1, le=50), s: Session = Depends(current)) -> dict[str, Any]:
    """Every scheduled policy with its next fires (UTC and local), last run and whether it is overdue."""
    return {"schedules": schedules.list_schedules(s.ws, s.caller, count)}


@router.get("/{policy_id}")
def get(policy_id: str, count: int = Query(5, ge=1, le=50), s: Session = Depends(current)) -> dict[str, Any]:
    return schedules.get_schedule(s.ws, s.caller, policy_id, count)


@router.put("/{policy_id}")
def update(policy_id: str, body: ScheduleIn, s: Session = Depends(current)) -> dict[str, Any]:
    """Change any field: ``{"enabled": false}`` disables, a new cadence replaces the old one."""
    return schedules.update_schedule(s.ws, s.caller, policy_id, body.changes())


@router.delete("/{policy_id}")
def delete(policy_id: str, s: Session = Depends(current)) -> dict[str, Any]:
    return schedules.delete_schedule(s.ws, s.caller, policy_id)


@router.get("/{policy_id}/runs")
def history(policy_id: str, limit: int = Query(100, ge=1, le=1000), s: Session = Depends(current)) -> dict[str, Any]:
    """Execution history: each slot, newest first, with its run and status or why it was skipped."""
    return schedules.schedule_runs(s.ws, s.caller, policy_id, limit)
