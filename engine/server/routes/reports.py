"""/api/v1/reports and /api/v1/deliveries: report versions with their snapshots, the delivery ledger.

These read tables that the report and send stages own (``steps.report.versions``,
``steps.send.deliveries``); the core engine knows nothing of them, this face composes them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from ...errors import NotFound
from ...service import require
from ...store import runs as runs_table
from ..auth import Session, current

router = APIRouter(tags=["reports"])


def _reports_db(s: Session) -> Any:
    from steps.report import versions

    return versions, s.ws.store.database(versions.metadata)


@router.get("/reports")
def list_reports(s: Session = Depends(current)) -> dict[str, Any]:
    require(s.caller, "read")
    versions, db = _reports_db(s)
    return {"reports": versions.list_reports(db)}


@router.get("/reports/{report_id}/versions")
def report_versions(report_id: str, s: Session = Depends(current)) -> dict[str, Any]:
    require(s.caller, "read")
    versions, db = _reports_db(s)
    found = versions.list_versions(db, report_id)
    if not found:
        raise NotFound(f"no report {report_id!r} in this workspace (GET /api/v1/reports lists them)")
    return {"report_id": report_id, "versions": found}


@router.get("/reports/{report_id}/versions/{number}")
def report_version(report_id: str, number: int, s: Session = Depends(current)) -> dict[str, Any]:
    """One version with its frozen data snapshot (what the report showed) and its spec."""
    require(s.caller, "read")
    versions, db = _reports_db(s)
    found = versions.get_snapshot(db, report_id, number)
    if found is None:
        raise NotFound(f"report {report_id!r} has no version {number}")
    return found


@router.get("/deliveries")
def deliveries(
    policy: str | None = None,
    status: str | None = Query(None, description="sent, failed, duplicate or sending"),
    limit: int = Query(200, ge=1, le=5000),
    s: Session = Depends(current),
) -> dict[str, Any]:
    require(s.caller, "read")
    from steps.send import deliveries as ledger

    db = s.ws.store.database(ledger.metadata)
    return {"deliveries": ledger.ledger(db, runs_table, policy_id=policy, status=status, limit=limit)}
