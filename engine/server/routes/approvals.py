"""Approvals: approve or revoke a policy version's approval hash; versions awaiting approval."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from ...service import approvals
from ..auth import Session, current
from ..models import ApprovalIn

router = APIRouter(tags=["approvals"])


@router.post("/policies/{policy_id}/approvals", status_code=201)
def approve(policy_id: str, body: ApprovalIn, s: Session = Depends(current)) -> dict[str, Any]:
    """Approve by hash (approver or admin; with separate_approver, not the version's own author: 403)."""
    return approvals.approve(s.ws, s.caller, policy_id, body.hash, body.note)


@router.delete("/policies/{policy_id}/approvals/{approval_hash}")
def revoke(
    policy_id: str, approval_hash: str, note: str | None = None, s: Session = Depends(current)
) -> dict[str, Any]:
    return approvals.revoke(s.ws, s.caller, policy_id, approval_hash, note)


@router.get("/approvals")
def pending(state: Literal["pending", "approved"] = Query("pending"), s: Session = Depends(current)) -> dict[str, Any]:
    return {"state": state, "approvals": approvals.list_approvals(s.ws, s.caller, state)}
