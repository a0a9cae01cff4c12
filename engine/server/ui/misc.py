"""Reports, schedules, deliveries, audit and settings pages (being built)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from ...service import audit
from .render import page
from .session import Visitor, visitor

router = APIRouter(include_in_schema=False)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, who: Visitor = Depends(visitor)) -> Response:
    entries = audit.entries(who.ws, who.caller, limit=200)
    return page(request, "audit.html", who=who, entries=list(reversed(entries)))
