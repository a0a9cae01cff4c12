"""Which hosts ``fetch.http`` may reach, and how fast: the allow-list and per-host rate limits.

Two policy sections (see docs/steps/fetch.md):

- ``allowed_hosts``: host names (``api.example.com``), wildcards for subdomains
  (``*.example.com``), added to the engine configuration's ``[fetch] allowed_hosts``. Nothing is
  allowed unless listed: there is no "allow all".
- ``rate_limits``: per host, a leaky bucket (``max_rate`` requests per ``time_period_s``) and a
  concurrency cap. ``"*"`` sets the default for hosts not named. Every fetch in one process
  that goes to the same host shares that host's limiter, so concurrent steps together keep to it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from aiolimiter import AsyncLimiter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from engine import EngineConfig, policy_section


class RateLimit(BaseModel):
    """Requests to one host: at most ``max_rate`` per ``time_period_s``, ``max_concurrency`` at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_rate: float = Field(10, gt=0, description="Requests allowed per time_period_s (leaky bucket).")
    time_period_s: float = Field(1, gt=0, description="The period max_rate counts over, in seconds.")
    max_concurrency: int = Field(4, ge=1, description="Requests in flight to the host at once, at most.")


DEFAULT_LIMIT = RateLimit()


def _host_name(value: str) -> str:
    text = value.strip().lower()
    if not text or any(c in text for c in ":/@ ") or ("*" in text and not text.startswith("*.")):
        raise ValueError(
            f"{value!r} is not a host name: write it without scheme, port or path, e.g. 'api.example.com' "
            "or '*.example.com'"
        )
    return text


HostName = Annotated[str, AfterValidator(_host_name)]

policy_section(
    "allowed_hosts",
    list[HostName],
    "Hosts fetch.http and fetch.sql (url) may reach (besides engine config [fetch] allowed_hosts); "
    "'*.example.com' allows subdomains.",
    default=[],
)
policy_section(
    "rate_limits",
    dict[str, RateLimit],
    "Per-host request limits for fetch.http; the key '*' sets the default for other hosts.",
    default={},
)


def configured_hosts(config: EngineConfig) -> list[str]:
    value = config.section("fetch").get("allowed_hosts", [])
    if isinstance(value, str):  # ENGINE_FETCH_ALLOWED_HOSTS=a.example.com,b.example.com
        value = [v.strip() for v in value.split(",")]
    return [str(v).strip().lower() for v in value if str(v).strip()]


def allowed_patterns(sections: Mapping[str, Any], config: EngineConfig) -> list[str]:
    return [*(h.strip().lower() for h in sections.get("allowed_hosts", [])), *configured_hosts(config)]


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def not_allowed_message(host: str, patterns: list[str]) -> str:
    listed = ", ".join(patterns) if patterns else "none"
    return f"host {host!r} is not on the allow-list (allowed: {listed})"


ALLOW_HINT = "add it to the policy's allowed_hosts, or to allowed_hosts under [fetch] in engine.toml"


def limit_for(host: str, limits: Mapping[str, RateLimit], config: EngineConfig) -> RateLimit:
    if host in limits:
        return limits[host]
    if "*" in limits:
        return limits["*"]
    fetch = config.section("fetch")
    defaults = {k: fetch[k] for k in ("max_rate", "time_period_s", "max_concurrency") if k in fetch}
    return RateLimit(**defaults) if defaults else DEFAULT_LIMIT


class HostGate:
    """The limiter and semaphore of one host in one event loop."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.bucket = AsyncLimiter(limit.max_rate, limit.time_period_s)
        self.slots = asyncio.Semaphore(limit.max_concurrency)

    async def __aenter__(self) -> HostGate:
        await self.slots.acquire()
        try:
            await self.bucket.acquire()
        except BaseException:
            self.slots.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.slots.release()


# one gate per (host, limit) per event loop: steps of one run share it; a new loop starts afresh
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, RateLimit], HostGate]] = (
    weakref.WeakKeyDictionary()
)


def gate(host: str, limit: RateLimit) -> HostGate:
    per_loop = _gates.setdefault(asyncio.get_running_loop(), {})
    key = (host, limit)
    if key not in per_loop:
        per_loop[key] = HostGate(limit)
    return per_loop[key]
