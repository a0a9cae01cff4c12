"""Login, logout and the home page; the UI's router, to which the other page modules add theirs."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections import Counter
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...errors import EngineError
from ...governance import tokens
from ...service import approvals, runs, schedules
from .render import page
from .session import COOKIE, LIFETIME_S, LOGIN_COOKIE, LoginRequired, Visitor, check_csrf, sessions_of, visitor

router = APIRouter(include_in_schema=False)
# the reasons a session ends that the login page repeats (LoginRequired); nothing else is shown
_KNOWN_ERROR = re.compile(r"^(invalid token|token '[A-Za-z0-9._@:-]{1,200}' is (revoked|expired))$")


def _safe_next(value: str | None) -> str:
    """Only a path of this site (never another origin) to go back to after logging in."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", error: str | None = None) -> Response:
    if error is not None and not _KNOWN_ERROR.match(error):  # a link cannot put its own words here
        error = None
    login_csrf = secrets.token_urlsafe(24)
    response = page(request, "login.html", next=_safe_next(next), error=error, login_csrf=login_csrf)
    _cookie(response, request, LOGIN_COOKIE, login_csrf, 3600)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = dict(await request.form())
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    given = str(form.get("csrf_token") or "")
    if not expected or not secrets.compare_digest(given, expected):
        return page(
            request, "error.html", status_code=403, title="Forbidden", detail="the login form expired: reload it"
        )
    text = str(form.get("token") or "").strip()
    server = request.app.state.server
    try:
        tokens.authenticate(server.tokens_store.engine, text)
    except EngineError as exc:
        login_csrf = secrets.token_urlsafe(24)
        response = page(
            request,
            "login.html",
            status_code=401,
            next=_safe_next(str(form.get("next") or "/")),
            error=f"{exc}",
            login_csrf=login_csrf,
        )
        _cookie(response, request, LOGIN_COOKIE, login_csrf, 3600)
        return response
    session_id, _ = sessions_of(request).open(tokens.digest(text))
    response = RedirectResponse(_safe_next(str(form.get("next") or "/")), status_code=303)
    _cookie(response, request, COOKIE, session_id, LIFETIME_S)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request, who: Visitor = Depends(visitor)) -> Response:
    form = dict(await request.form())
    if not check_csrf(request, who, form):
        return page(request, "error.html", who=who, status_code=403, title="Forbidden", detail="bad CSRF token")
    sessions_of(request).close(who.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, who: Visitor = Depends(visitor)) -> Response:
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=24)).isoformat()
    recent = runs.list_runs(who.ws, who.caller, since=since, limit=500)["runs"]
    by_status = Counter(r["status"] for r in recent)
    upcoming = []
    for entry in schedules.list_schedules(who.ws, who.caller, count=1):
        if entry.get("enabled") and entry.get("next_fires"):
            upcoming.append(
                {"policy_id": entry["policy_id"], "next": entry["next_fires"][0], "description": entry["description"]}
            )
    upcoming.sort(key=lambda e: e["next"]["utc"])
    pending = approvals.list_approvals(who.ws, who.caller, "pending")
    failed = _failed_deliveries(who)
    return page(
        request,
        "home.html",
        who=who,
        by_status=sorted(by_status.items()),
        recent=recent[:10],
        upcoming=upcoming[:10],
        pending=pending,
        failed=failed,
    )


def _failed_deliveries(who: Visitor) -> list[dict[str, Any]]:
    from steps.send import deliveries as ledger

    from ...store import runs as runs_table

    db = who.ws.store.database(ledger.metadata)
    return ledger.ledger(db, runs_table, status="failed", limit=20)


def login_redirect(request: Request, exc: LoginRequired) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    current = request.headers.get("hx-current-url")
    if request.headers.get("hx-request") and current:  # a fragment: back to the page it was on
        parsed = urlsplit(current)
        target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    location = f"/login?next={quote(target)}"
    if exc.reason:
        location += f"&error={quote(exc.reason)}"
    if request.headers.get("hx-request"):  # htmx: a whole-page redirect, not a fragment
        return Response(status_code=204, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def page_modules() -> list[Any]:
    """This module and every page module of the UI (each with its ``router``)."""
    import importlib
    import sys

    names = ["policies", "runs", "files", "misc"]
    found = [sys.modules[__name__]]
    for name in names:
        try:
            found.append(importlib.import_module(f"{__package__}.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
    return found
