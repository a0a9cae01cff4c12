"""Audit actions: read a workspace's audit log and verify its hash chain."""

from __future__ import annotations

from typing import Any

from ..governance import audit
from .access import Caller, require
from .workspace import Workspace


def entries(
    ws: Workspace,
    caller: Caller,
    *,
    policy: str | None = None,
    since: str | None = None,
    action: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    from .runs import utc_text

    require(caller, "read")
    found = audit.entries(ws.store.engine, policy_id=policy, since=utc_text(since, "since"), action=action, limit=limit)
    return [e.to_dict() for e in found]


def verify(ws: Workspace, caller: Caller, expected_head: str | None = None) -> dict[str, Any]:
    """The ``engine audit verify --json`` result for the workspace's chain."""
    require(caller, "read")
    return audit.verify(ws.store.engine, expected_head).to_dict()
