"""API tokens: who a request to the server is, with which role, in which workspace.

``engine token create`` makes a token and prints it once; only its SHA-256 is stored, so a
stolen database does not give the tokens away. A token has a ``name`` (the actor of everything
done with it), a ``role`` (:data:`ROLES`) and a ``workspace``; it may expire and can be revoked.
:func:`authenticate` answers who a presented token is, or why it is refused, in constant time
with respect to the token's content (the lookup is by hash, the comparison ``hmac.compare_digest``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..errors import EngineError, UsageError
from ..workspaces import check_name
from . import audit
from .tables import api_tokens

ROLES = ("viewer", "author", "approver", "admin")
DEFAULT_WORKSPACE = "default"
TOKEN_PREFIX = "eng_"
_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,199}$")


class AuthError(EngineError):
    """A presented token is missing, unknown, expired or revoked (HTTP 401)."""

    exit_code = 2


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    role: str
    workspace: str
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None

    def state(self, now: str) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self, now: str | None = None) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "workspace": self.workspace,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "state": self.state(now or audit.utc_now()),
        }


def parse_duration(text: str) -> dt.timedelta:
    """``90d``, ``12h``, ``30m``, ``2w`` as a duration; a UsageError for anything else."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"--expires {text!r}: expected a number and a unit, such as 90d, 12h, 30m or 2w")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        row.id, row.name, row.role, row.workspace, row.created_at, row.created_by, row.expires_at, row.revoked_at
    )


def create(
    engine: Engine,
    *,
    name: str,
    role: str,
    workspace: str,
    actor: str,
    expires: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> tuple[str, TokenInfo]:
    """A new token: ``(the token text, shown once; what is stored)``. Audited ``token.created``."""
    if role not in ROLES:
        raise UsageError(f"--role {role!r}: one of {', '.join(ROLES)}")
    if not _NAME.match(name):
        raise UsageError(
            f"--name {name!r}: letters, digits and . _ @ : - (at most 200), starting with a letter or digit"
        )
    check_name(workspace, "--workspace")
    moment = now or dt.datetime.now(dt.UTC)
    stamp = moment.isoformat(timespec="microseconds")
    expires_at = (moment + expires).isoformat(timespec="microseconds") if expires else None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        taken = conn.execute(
            sa.select(api_tokens.c.id).where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
        ).first()
        if taken is not None:
            raise UsageError(f"a token named {name!r} exists: revoke it first ('engine token revoke {name}')")
        result = conn.execute(
            api_tokens.insert().values(
                name=name,
                token_sha256=digest(token),
                role=role,
                workspace=workspace,
                created_at=stamp,
                created_by=actor,
                expires_at=expires_at,
            )
        )
        details = {"name": name, "role": role, "workspace": workspace, "expires_at": expires_at}
        audit.append(conn, actor, "token.created", name, details, stamp)
        token_id = result.inserted_primary_key[0]
    info = TokenInfo(token_id, name, role, workspace, stamp, actor, expires_at, None)
    return token, info


def tokens(engine: Engine, workspace: str | None = None) -> list[TokenInfo]:
    query = sa.select(api_tokens).order_by(api_tokens.c.id)
    if workspace is not None:
        query = query.where(api_tokens.c.workspace == workspace)
    with engine.connect() as conn:
        return [_info(r) for r in conn.execute(query)]


def revoke(engine: Engine, name: str, actor: str) -> TokenInfo:
    """Revoke the active token called ``name`` (audited ``token.revoked``); its requests get 401."""
    stamp = audit.utc_now()
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(api_tokens).where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
        ).first()
        if row is None:
            raise UsageError(f"no active token named {name!r} ('engine token list' shows them)")
        conn.execute(api_tokens.update().where(api_tokens.c.id == row.id).values(revoked_at=stamp, revoked_by=actor))
        audit.append(conn, actor, "token.revoked", name, {"name": name, "workspace": row.workspace}, stamp)
    return TokenInfo(row.id, row.name, row.role, row.workspace, row.created_at, row.created_by, row.expires_at, stamp)


def authenticate(engine: Engine, presented: str | None, now: str | None = None) -> TokenInfo:
    """The token's owner, or :class:`AuthError` saying why not (never echoing the token)."""
    if not presented:
        raise AuthError("no token: send 'Authorization: Bearer <token>' ('engine token create' makes one)")
    return authenticate_digest(engine, digest(presented), now)


def authenticate_digest(engine: Engine, wanted: str, now: str | None = None) -> TokenInfo:
    """As :func:`authenticate`, for a token known by its SHA-256 (a web session keeps only that)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(api_tokens).where(api_tokens.c.token_sha256 == wanted)).first()
    if row is None or not hmac.compare_digest(row.token_sha256, wanted):
        raise AuthError("invalid token")
    info = _info(row)
    state = info.state(now or audit.utc_now())
    if state != "active":
        raise AuthError(f"token {info.name!r} is {state}")
    return info
