"""/api/v1/audit: the workspace's audit log and the verification of its chain."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from ...service import audit
from ..auth import Session, current

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("")
def log(
    policy: str | None = None,
    since: str | None = Query(None, description="ISO 8601 UTC: entries at or after."),
    action: str | None = None,
    limit: int = Query(1000, ge=1, le=10000),
    s: Session = Depends(current),
) -> dict[str, Any]:
    return {"entries": audit.entries(s.ws, s.caller, policy=policy, since=since, action=action, limit=limit)}


@router.get("/verify")
def verify(expected_head: str | None = None, s: Session = Depends(current)) -> dict[str, Any]:
    """Recompute the chain: ``ok``, the head, and the first bad entry if any (as ``engine audit verify``)."""
    return audit.verify(s.ws, s.caller, expected_head)
