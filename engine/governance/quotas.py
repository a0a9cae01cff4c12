"""Quotas: how many of an action one actor may do in a sliding window, counted in the database.

``[quotas]`` in the engine configuration holds ``<name>_per_<window>`` keys (window: ``minute``,
``hour`` or ``day``); ``0`` means unlimited. The defaults are :data:`DEFAULTS`. Usage rows live in
``quota_usage``, so every process sharing the database counts the same. A use is inserted
first and counted after, in one transaction that holds the write lock: two processes at the
limit cannot both pass.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..config import EngineConfig
from ..errors import ConfigError, QuotaExceeded
from ..store import serialize
from . import audit
from .tables import quota_usage

DEFAULTS = {
    "policy_versions_per_day": 20,
    "runs_per_hour": 60,
    "emails_per_day": 50,
    "sql_queries_per_hour": 100,
}
WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Quota:
    name: str  # policy_versions_per_day
    limit: int  # 0: unlimited
    window_s: int

    @property
    def window_text(self) -> str:
        return self.name.rsplit("_per_", 1)[1]


def quota(config: EngineConfig, name: str) -> Quota:
    """The quota ``name`` (``runs_per_hour``) as configured, else its default."""
    what, sep, window = name.rpartition("_per_")
    if not sep or window not in WINDOWS or not what:
        raise ConfigError(f"quota {name!r}: expected <what>_per_minute, _per_hour or _per_day")
    section = config.section("quotas")
    value: Any = section.get(name, DEFAULTS.get(name, 0))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{config.where('quotas')}: {name} must be a whole number >= 0 (0: unlimited), not {value!r}")
    return Quota(name, value, WINDOWS[window])


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)


def use(
    engine: Engine, config: EngineConfig, name: str, actor: str, count: int = 1, *, at: str = "", subject: str = ""
) -> None:
    """Count ``count`` uses of quota ``name`` by ``actor``, or raise :class:`QuotaExceeded` (audited)."""
    q = quota(config, name)
    if q.limit == 0 or count <= 0:
        return
    stamp = at or audit.utc_now()
    since = (_parse(stamp) - dt.timedelta(seconds=q.window_s)).isoformat(timespec="microseconds")
    window = sa.and_(quota_usage.c.quota == name, quota_usage.c.actor == actor, quota_usage.c.at > since)
    refused: tuple[int, str] | None = None
    with engine.begin() as conn:
        serialize(conn, f"quota:{name}:{actor}")  # PostgreSQL: the count below sees every earlier use
        result = conn.execute(quota_usage.insert().values(actor=actor, quota=name, at=stamp, count=count))
        used = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(quota_usage.c.count), 0)).where(window)).scalar_one()
        if used > q.limit:
            own = result.inserted_primary_key[0]
            conn.execute(quota_usage.delete().where(quota_usage.c.id == own))
            rows = conn.execute(
                sa.select(quota_usage.c.at, quota_usage.c.count).where(window).order_by(quota_usage.c.at)
            ).all()
            refused = (used - count, _next_allowed(rows, q, count, stamp))
    if refused is None:
        return
    already, next_at = refused
    message = (
        f"quota {name} reached for {actor}: {already} used in the last {q.window_text} (limit {q.limit}); "
        f"the next {'one' if count == 1 else f'{count}'} is allowed at {next_at} UTC. "
        f"An administrator can raise it with [quotas] {name} = N in engine.toml (0: unlimited)"
    )
    audit.record(
        engine,
        actor,
        "quota.refused",
        subject or name,
        {"quota": name, "limit": q.limit, "used": already, "asked": count, "next_allowed_at": next_at},
    )
    raise QuotaExceeded(message, quota=name, next_allowed_at=next_at)


def _next_allowed(rows: list[Any], q: Quota, count: int, stamp: str) -> str:
    """When enough of the window's uses have aged out for ``count`` more."""
    used = sum(r.count for r in rows)
    for row in rows:
        used -= row.count
        if used + count <= q.limit:
            moment = _parse(row.at) + dt.timedelta(seconds=q.window_s)
            return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return _parse(stamp).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def usage(engine: Engine, config: EngineConfig, actor: str, *, at: str = "") -> dict[str, dict[str, Any]]:
    """Each known quota's limit and what ``actor`` used of it in the current window."""
    stamp = at or audit.utc_now()
    names = sorted({*DEFAULTS, *config.section("quotas")})
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for name in names:
            q = quota(config, name)
            since = (_parse(stamp) - dt.timedelta(seconds=q.window_s)).isoformat(timespec="microseconds")
            used = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(quota_usage.c.count), 0)).where(
                    quota_usage.c.quota == name, quota_usage.c.actor == actor, quota_usage.c.at > since
                )
            ).scalar_one()
            out[name] = {"limit": q.limit, "used": used, "window": q.window_text}
    return out
