"""/api/v1/policies: create, read, update, archive, versions, diff, validate, plan, dry run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from ...service import policies, runs
from ..auth import Session, current
from ..launch import launcher, links
from ..models import Accepted, PolicyRecorded, RunIn

router = APIRouter(prefix="/policies", tags=["policies"])

_DOCUMENT = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PolicyDocument"}}},
    }
}


async def body_text(request: Request) -> str:
    """The request body as text: the policy is validated from it, so problems get its line numbers."""
    return (await request.body()).decode("utf-8", errors="replace")


@router.post("", status_code=201, response_model=PolicyRecorded, openapi_extra=_DOCUMENT)
def create(response: Response, text: str = Depends(body_text), s: Session = Depends(current)) -> dict[str, Any]:
    """Validate and record a new policy (422 with every problem when invalid; nothing recorded)."""
    out = policies.create_policy(s.ws, s.caller, text)
    response.headers["Location"] = f"/api/v1/policies/{out['id']}"
    return out


@router.get("")
def list_all(s: Session = Depends(current)) -> dict[str, Any]:
    return {"policies": policies.list_policies(s.ws, s.caller)}


@router.post("/validate", openapi_extra=_DOCUMENT)
def validate(text: str = Depends(body_text), s: Session = Depends(current)) -> dict[str, Any]:
    """Validate a document and record nothing: ``{valid, problems}`` (200 either way)."""
    return policies.validate(s.ws, s.caller, text)


@router.get("/{policy_id}")
def get(policy_id: str, version: int | None = Query(None, ge=1), s: Session = Depends(current)) -> dict[str, Any]:
    return policies.get_policy(s.ws, s.caller, policy_id, version)


@router.put("/{policy_id}", response_model=PolicyRecorded, openapi_extra=_DOCUMENT)
def update(policy_id: str, text: str = Depends(body_text), s: Session = Depends(current)) -> dict[str, Any]:
    """Record a new version (the same content again returns its existing version, ``new: false``)."""
    return policies.update_policy(s.ws, s.caller, policy_id, text)


@router.delete("/{policy_id}")
def archive(policy_id: str, s: Session = Depends(current)) -> dict[str, Any]:
    """Archive: hidden from lists and schedules; versions, runs and audit entries are kept."""
    return policies.archive_policy(s.ws, s.caller, policy_id)


@router.get("/{policy_id}/versions")
def versions(policy_id: str, s: Session = Depends(current)) -> dict[str, Any]:
    return {"policy_id": policy_id, "versions": policies.versions(s.ws, s.caller, policy_id)}


@router.get("/{policy_id}/diff")
def diff(
    policy_id: str,
    from_version: int | None = Query(None, alias="from", ge=1),
    to_version: int | None = Query(None, alias="to", ge=1),
    s: Session = Depends(current),
) -> dict[str, Any]:
    return policies.diff(s.ws, s.caller, policy_id, from_version, to_version)


@router.post("/{policy_id}/plan")
def plan(policy_id: str, body: RunIn | None = None, s: Session = Depends(current)) -> dict[str, Any]:
    return policies.plan(s.ws, s.caller, policy_id, body.params if body else None)


@router.post("/{policy_id}/dry-run", status_code=202, response_model=Accepted)
def dry_run(policy_id: str, body: RunIn | None = None, s: Session = Depends(current)) -> dict[str, Any]:
    """Start a dry run (no approval needed, no side effects); its previews are read via the run."""
    out = runs.start_run(s.ws, s.caller, policy_id, launcher(s), params=body.params if body else None, dry_run=True)
    return {**out, "links": links(out["run_id"])}


@router.post("/{policy_id}/runs", status_code=202, response_model=Accepted)
def run(policy_id: str, body: RunIn | None = None, s: Session = Depends(current)) -> dict[str, Any]:
    """Start a run of the latest version: 409 when it is not approved, 429 over the run quota."""
    out = runs.start_run(
        s.ws,
        s.caller,
        policy_id,
        launcher(s),
        params=body.params if body else None,
        scheduled_for=body.scheduled_for if body else None,
    )
    return {**out, "links": links(out["run_id"])}
