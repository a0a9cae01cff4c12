"""/api/v1/runs: list, show, resume, cancel, live events, logs, previews; /api/v1/artifacts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from ...service import runs
from ..auth import Session, current
from ..events import run_events
from ..launch import canceller, launcher, links
from ..models import Accepted

router = APIRouter(tags=["runs"])


@router.get("/runs", response_class=JSONResponse)
async def list_runs(
    policy: str | None = None,
    status: str | None = None,
    trigger: str | None = None,
    since: str | None = Query(None, description="ISO 8601 (any offset): runs started at or after."),
    until: str | None = Query(None, description="ISO 8601 (any offset): runs started before."),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    s: Session = Depends(current),
) -> JSONResponse:
    """Runs newest first, a page at a time: follow ``next_cursor`` until it is null."""
    # The most read page: answered on the event loop (an indexed SQLite read of ~0.5 ms) and encoded
    # once; a worker thread and response validation would cost more than the read itself.
    page = runs.list_runs(
        s.ws,
        s.caller,
        policy=policy,
        status=status,
        trigger=trigger,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return JSONResponse(page)


@router.get("/runs/{run_id}")
def show(run_id: str, s: Session = Depends(current)) -> dict[str, Any]:
    """The run as ``engine show RUN_ID --json`` prints it, with the names of its previews."""
    return runs.show(s.ws, s.caller, run_id)


@router.post("/runs/{run_id}/resume", status_code=202, response_model=Accepted)
def resume(run_id: str, s: Session = Depends(current)) -> dict[str, Any]:
    out = runs.resume(s.ws, s.caller, run_id, launcher(s))
    return {**out, "links": links(out["run_id"])}


@router.post("/runs/{run_id}/cancel", status_code=202)
def cancel(run_id: str, s: Session = Depends(current)) -> dict[str, Any]:
    return runs.cancel(s.ws, s.caller, run_id, canceller(s))


@router.get("/runs/{run_id}/events", response_class=StreamingResponse)
def events(run_id: str, s: Session = Depends(current)) -> StreamingResponse:
    """Server-sent events: ``snapshot``, then ``step``/``run`` per committed transition, then ``end``."""
    full_id = runs.status_of(s.ws, run_id)["run_id"]  # 404 before the stream starts; a prefix resolved
    return StreamingResponse(
        run_events(s.ws, s.caller, full_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/runs/{run_id}/logs")
def logs(run_id: str, s: Session = Depends(current)) -> dict[str, Any]:
    """The run's log events (the JSON lines of the server's logs/engine.log for this run)."""
    return {"run_id": run_id, "events": runs.logs(s.ws, s.caller, run_id, s.server.log_file)}


@router.get("/runs/{run_id}/previews/{name}", response_class=FileResponse)
def preview(run_id: str, name: str, s: Session = Depends(current)) -> FileResponse:
    """A dry run's preview file: the e-mail as .eml, HTML, JSON (names are in the run's ``previews``)."""
    path = runs.preview(s.ws, s.caller, run_id, name)
    return FileResponse(path, media_type=runs.media_type(path), filename=path.name, content_disposition_type="inline")


@router.get("/artifacts/{sha256}", response_class=FileResponse)
def artifact(sha256: str, s: Session = Depends(current)) -> FileResponse:
    """A stored file (the PDF, a chart) by its SHA-256, if a run of this workspace produced it."""
    path, media_type = runs.artifact(s.ws, s.caller, sha256)
    return FileResponse(path, media_type=media_type)
