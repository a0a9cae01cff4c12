"""Bearer tokens to callers: every route declares ``Depends(current)`` and gets who asks and
their workspace. A missing, unknown, expired or revoked token is a 401 with ``WWW-Authenticate``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..governance import tokens
from ..service import Caller, Workspace
from .context import ServerContext

_bearer = HTTPBearer(auto_error=False, description="An API token from 'engine token create'.")


@dataclass(frozen=True)
class Session:
    caller: Caller
    ws: Workspace
    server: ServerContext


def server_of(request: Request) -> ServerContext:
    return request.app.state.server


async def current(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Session:
    # on the event loop: one indexed SELECT (~0.1 ms) costs less than a hand-off to a worker thread
    server = server_of(request)
    presented = credentials.credentials if credentials is not None else None
    info = tokens.authenticate(server.tokens_store.engine, presented)  # AuthError: 401
    caller = Caller(actor=info.name, role=info.role, workspace=info.workspace)
    request.state.actor = info.name  # for the access log (never the token)
    return Session(caller, server.workspace(info.workspace), server)
