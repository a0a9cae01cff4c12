"""Web sessions: log in with an API token, a random session id in an HttpOnly SameSite=Strict
cookie, a CSRF token per session checked on every form post, logout.

The server keeps, per session, only the token's SHA-256: each request authenticates it again, so
a revoked or expired token ends its sessions at once. Sessions live in the server's memory (a
restart asks people to log in again) and expire after 12 hours.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from ...errors import EngineError
from ...governance import tokens
from ...service import Caller, Workspace
from ..context import ServerContext

COOKIE = "engine_session"
LOGIN_COOKIE = "engine_login_csrf"
LIFETIME_S = 12 * 3600


@dataclass
class WebSession:
    token_sha256: str
    csrf: str
    created: float = field(default_factory=time.monotonic)


class Sessions:
    def __init__(self) -> None:
        self._by_id: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def open(self, token_sha256: str) -> tuple[str, WebSession]:
        session_id = secrets.token_urlsafe(32)
        session = WebSession(token_sha256, secrets.token_urlsafe(32))
        with self._lock:
            self._by_id[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> WebSession | None:
        if not session_id:
            return None
        with self._lock:
            session = self._by_id.get(session_id)
            if session is not None and time.monotonic() - session.created > LIFETIME_S:
                del self._by_id[session_id]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._by_id.pop(session_id or "", None)


class LoginRequired(Exception):
    """No valid session: the page redirects to /login (and back after it)."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "log in")
        self.reason = reason


@dataclass(frozen=True)
class Visitor:
    """A logged-in person: the caller (actor, role, workspace), the workspace, the CSRF token."""

    caller: Caller
    ws: Workspace
    server: ServerContext
    csrf: str
    session_id: str

    def may(self, action: str) -> bool:
        return self.caller.may(action)


def sessions_of(request: Request) -> Sessions:
    return request.app.state.web_sessions


def visitor(request: Request) -> Visitor:
    """The dependency of every page: who is logged in, or LoginRequired."""
    server: ServerContext = request.app.state.server
    session_id = request.cookies.get(COOKIE)
    session = sessions_of(request).get(session_id)
    if session is None or session_id is None:
        raise LoginRequired()
    try:
        info = tokens.authenticate_digest(server.tokens_store.engine, session.token_sha256)
    except EngineError as exc:  # revoked or expired since the login
        sessions_of(request).close(session_id)
        raise LoginRequired(str(exc)) from None
    caller = Caller(actor=info.name, role=info.role, workspace=info.workspace)
    found = Visitor(caller, server.workspace(info.workspace), server, session.csrf, session_id)
    request.state.visitor = found  # error pages show the menu too
    return found


def check_csrf(request: Request, who: Visitor, form: dict[str, Any] | None) -> bool:
    """The form's ``csrf_token`` (or the ``X-CSRF-Token`` header htmx sends) is the session's."""
    given = (form or {}).get("csrf_token") or request.headers.get("x-csrf-token") or ""
    return hmac.compare_digest(str(given), who.csrf)


def bad_csrf(request: Request, who: Visitor) -> Any:
    """The answer to a form whose CSRF token is not the session's: a 403 page."""
    from .render import page

    detail = "the form expired (bad CSRF token): reload the page and try again"
    return page(request, "error.html", who=who, status_code=403, title="Forbidden", detail=detail)


def is_htmx(request: Request) -> bool:
    """An htmx request for a fragment (not a boosted whole page)."""
    return bool(request.headers.get("hx-request")) and not request.headers.get("hx-boosted")
