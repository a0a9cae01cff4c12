"""The engine's errors as HTTP answers, in one place: ``application/problem+json`` (RFC 9457).

| error | status |
|---|---|
| AuthError | 401 (with ``WWW-Authenticate: Bearer``) |
| Forbidden | 403 |
| NotFound | 404 |
| NotApproved, Conflict, ResumeError | 409 |
| PolicyError | 422 (``errors``: every problem with pointer, line, column, message) |
| QuotaExceeded | 429 (with ``Retry-After``) |
| UsageError, ConfigError | 400 |
| anything else | 500, with no stack trace |
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    ConfigError,
    Conflict,
    EngineError,
    Forbidden,
    GovernanceError,
    NotApproved,
    NotFound,
    PolicyError,
    QuotaExceeded,
    ResumeError,
    UsageError,
)
from ..governance.tokens import AuthError
from ..logs import get_logger

PROBLEM = "application/problem+json"

# (class, status, slug, title): the first that matches wins
_TABLE: list[tuple[type[Exception], int, str, str]] = [
    (AuthError, 401, "unauthorized", "Not authenticated"),
    (Forbidden, 403, "forbidden", "Forbidden"),
    (NotApproved, 409, "not-approved", "Policy version not approved"),
    (QuotaExceeded, 429, "quota-exceeded", "Quota exceeded"),
    (GovernanceError, 403, "refused", "Refused by a governance rule"),
    (PolicyError, 422, "invalid-policy", "Invalid policy"),
    (NotFound, 404, "not-found", "Not found"),
    (Conflict, 409, "conflict", "Conflict"),
    (ResumeError, 409, "cannot-resume", "Cannot resume"),
    (ConfigError, 400, "configuration", "Configuration problem"),
    (UsageError, 400, "bad-request", "Bad request"),
]
_HTTP_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
}


def problem(
    status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def engine_error(request: Request, exc: EngineError) -> JSONResponse:
    status, slug, title = next(
        ((code, name, text) for cls, code, name, text in _TABLE if isinstance(exc, cls)),
        (500, "engine-error", "Engine error"),
    )
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    detail = str(exc)
    if isinstance(exc, PolicyError):
        extra["errors"] = [
            {"pointer": p.pointer, "line": p.line, "column": p.column, "message": p.message, "hint": p.hint}
            for p in exc.problems
        ]
        detail = f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} in the policy"
    elif isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = 'Bearer realm="engine"'
    elif isinstance(exc, NotApproved) and exc.policy_id and exc.approval_hash:
        extra["approve"] = {
            "hash": exc.approval_hash,
            "command": f"engine approve {exc.policy_id} --hash {exc.approval_hash}",
            "request": f"POST /api/v1/policies/{exc.policy_id}/approvals",
        }
    elif isinstance(exc, QuotaExceeded):
        extra["quota"] = exc.quota
        extra["next_allowed_at"] = exc.next_allowed_at
        headers["Retry-After"] = str(_retry_after(exc.next_allowed_at))
    return problem(status, slug, title, detail, headers or None, **extra)


def _retry_after(next_allowed_at: str | None) -> int:
    if not next_allowed_at:
        return 60
    try:
        moment = dt.datetime.fromisoformat(next_allowed_at)
    except ValueError:
        return 60
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return max(1, int((moment - dt.datetime.now(dt.UTC)).total_seconds() + 0.999))


def install(app: FastAPI) -> None:
    @app.exception_handler(EngineError)
    async def _engine(request: Request, exc: EngineError) -> Any:
        if _is_page(request):
            return _html(request, engine_error(request, exc))
        return engine_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Any:
        errors = [
            {
                "pointer": "/" + "/".join(str(p) for p in e.get("loc", ())[1:]),
                "line": None,
                "column": None,
                "message": e.get("msg", "invalid"),
                "where": str(e.get("loc", ("",))[0]),
            }
            for e in exc.errors()
        ]
        if _is_page(request):
            where = "; ".join(f"{e['where']} {e['pointer'].lstrip('/')}: {e['message']}" for e in errors)
            return _html(request, problem(422, "invalid-request", "Invalid request", where))
        return problem(
            422, "invalid-request", "Invalid request", f"{len(errors)} problem(s) in the request", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Any:
        title = _HTTP_TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        answer = problem(exc.status_code, f"http-{exc.status_code}", title, detail, dict(exc.headers or {}) or None)
        return _html(request, answer) if _is_page(request) else answer

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        get_logger().error("server.error", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
        return problem(
            500, "internal", "Internal error", "the server failed; the error is in its log (logs/engine.log)"
        )


def _is_page(request: Request) -> bool:
    """A request of the web UI (an HTML page), not of the API or MCP."""
    path = request.url.path
    return not (path.startswith("/api/") or path == "/mcp" or path.startswith("/static/"))


def _html(request: Request, answer: JSONResponse) -> Any:
    """The same error as an HTML page (the web UI), with its status."""
    import json

    from .ui.render import page

    body = json.loads(answer.body)
    who = getattr(request.state, "visitor", None)
    return page(
        request, "error.html", who=who, status_code=answer.status_code, title=body["title"], detail=body["detail"]
    )
