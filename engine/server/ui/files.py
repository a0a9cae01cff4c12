"""Files for the browser session: a run's stored artifacts (the PDF, a chart) and a dry run's
previews, as the REST API serves them (``/api/v1/artifacts/...``, ``/api/v1/runs/.../previews/...``)
but authenticated by the web session instead of a bearer token.

Files are shown inline. Anything but a PDF is served with ``Content-Security-Policy: sandbox``,
so an HTML page or an SVG a policy rendered runs in an origin of its own, never with the UI's
session; ``nosniff`` keeps browsers to the media type given.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from ...service import runs
from .session import Visitor, visitor

router = APIRouter(include_in_schema=False)


def _headers(media_type: str) -> dict[str, str]:
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"}
    if media_type != "application/pdf":  # a sandboxed document cannot show Chromium's PDF viewer
        headers["Content-Security-Policy"] = "sandbox allow-scripts allow-popups allow-downloads"
    return headers


@router.get("/files/artifacts/{sha256}")
def artifact(sha256: str, who: Visitor = Depends(visitor)) -> FileResponse:
    """A stored file by its SHA-256, if a run of the visitor's workspace produced it."""
    path, media_type = runs.artifact(who.ws, who.caller, sha256)
    return _file(path, media_type, None)


@router.get("/files/runs/{run_id}/previews/{name}")
def preview(run_id: str, name: str, who: Visitor = Depends(visitor)) -> FileResponse:
    """A dry run's preview file (the e-mail as .eml, HTML, JSON, a PDF) by its name."""
    path = runs.preview(who.ws, who.caller, run_id, name)
    return _file(path, runs.media_type(path), path.name)


def _file(path: Path, media_type: str, filename: str | None) -> FileResponse:
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        content_disposition_type="inline",
        headers=_headers(media_type),
    )
