"""Approval actions: approve or revoke a policy version by its approval hash; what awaits approval.

The rules (``separate_approver``, hash prefixes, auditing) are :mod:`engine.governance.approval`'s;
this adds the role check and the workspace's view."""

from __future__ import annotations

from typing import Any

from ..governance import approval, registry
from . import policies
from .access import Caller, require
from .workspace import Workspace


def approve(ws: Workspace, caller: Caller, policy_id: str, hash_text: str, note: str | None = None) -> dict[str, Any]:
    require(caller, "approve")
    policies.latest(ws, policy_id)
    state = approval.approve(ws.store.engine, ws.config, policy_id, hash_text, caller.actor, note)
    return {"policy_id": policy_id, **state.to_dict()}


def revoke(ws: Workspace, caller: Caller, policy_id: str, hash_text: str, note: str | None = None) -> dict[str, Any]:
    require(caller, "approve")
    policies.latest(ws, policy_id, include_archived=True)
    state = approval.revoke(ws.store.engine, policy_id, hash_text, caller.actor, note)
    return {"policy_id": policy_id, **state.to_dict()}


def request_approval(
    ws: Workspace, caller: Caller, policy_id: str, hash_text: str, note: str | None = None
) -> dict[str, Any]:
    """Ask a person to approve a version: listed with the pending approvals and audited. There is
    no way to approve through this: a person with the approver role does it."""
    require(caller, "write")
    policies.latest(ws, policy_id)
    return approval.request(ws.store.engine, policy_id, hash_text, caller.actor, note)


def list_approvals(ws: Workspace, caller: Caller, state: str = "pending") -> list[dict[str, Any]]:
    """``pending``: the latest version of each policy whose approval hash is not approved;
    ``approved``: each policy's approved hashes, with who and when."""
    require(caller, "read")
    hidden = policies.archived_ids(ws)
    out = []
    for version in registry.latest_versions(ws.store.engine):
        if version.policy_id in hidden:
            continue
        if state == "pending":
            current = approval.approval_of(ws.store.engine, version.policy_id, version.approval_hash)
            if not current.approved:
                asked = approval.requests_for(ws.store.engine, version.policy_id, version.approval_hash)
                out.append({**version.to_dict(), "approved": False, "requests": asked})
        else:
            for digest in sorted(approval.approved_hashes(ws.store.engine, version.policy_id)):
                current = approval.approval_of(ws.store.engine, version.policy_id, digest)
                out.append({"policy_id": version.policy_id, **current.to_dict()})
    return out
