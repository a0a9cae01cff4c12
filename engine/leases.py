"""Leases: how a process says "I am still working on this", in the database every host shares.

A running run (``runs``), a claimed schedule slot (``schedule_slots``) and a plugin's claim (a
delivery being sent) carry a lease: ``owner`` (``<host id>:<pid>``) and ``expires_at`` (ISO 8601
UTC). While the process lives, its heartbeat thread pushes ``expires_at`` forward every
``heartbeat_s`` (default 10 s) to ``lease_s`` (default 30 s) from now. Another process, on this
host or another, may mark the run interrupted, take the slot over or take the claim up only after
the lease expired (:meth:`Leases.expired`). On the host that owns a lease, a dead pid also counts
as expired at once, so recovery on one machine does not wait.

Times come from the database's clock on PostgreSQL (the hosts' clocks may disagree; the offset is
measured at start and again on every heartbeat), from this machine's on SQLite (one machine).

Settings (environment): ``ENGINE_HOST_ID`` (default: the host name; give each machine, or each
container, its own), ``ENGINE_LEASE_S`` (30) and ``ENGINE_HEARTBEAT_S`` (10; below the lease).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .errors import ConfigError

LEASE_S = 30.0
HEARTBEAT_S = 10.0


def host_id() -> str:
    """This host's identity in leases: ``ENGINE_HOST_ID``, else the host name."""
    return os.environ.get("ENGINE_HOST_ID") or socket.gethostname()


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{name}={text!r}: must be a number of seconds above 0 (default {default:g})")
    return value


@dataclass(frozen=True)
class LeaseSettings:
    lease_s: float
    heartbeat_s: float

    @classmethod
    def from_env(cls) -> LeaseSettings:
        lease_s = _seconds("ENGINE_LEASE_S", LEASE_S)
        heartbeat_s = _seconds("ENGINE_HEARTBEAT_S", min(HEARTBEAT_S, lease_s / 3))
        if heartbeat_s >= lease_s:
            raise ConfigError(
                f"ENGINE_HEARTBEAT_S={heartbeat_s:g} must be below ENGINE_LEASE_S={lease_s:g} "
                "(a third of it is a good choice): a lease would expire between two heartbeats"
            )
        return cls(lease_s, heartbeat_s)


def iso(instant: dt.datetime) -> str:
    """``instant`` as the state database writes times: ``2026-11-23T19:29:13.091205+00:00``."""
    return instant.astimezone(dt.UTC).isoformat(timespec="microseconds")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unchanged(column: Any, value: Any) -> Any:
    """``column`` still holds ``value`` as read (NULL included): the condition of a takeover that
    must fail if the lease's owner renewed it, or another process took it, in the meantime."""
    return column.is_(None) if value is None else column == value


@dataclass(frozen=True)
class Held:
    """A table whose rows this process's heartbeat renews: those with ``owner`` = this process
    and, when given, ``active`` true (``status = 'RUNNING'``)."""

    table: sa.Table
    active: Any = None


class Leases:
    """The leases of one state database, taken and renewed by this process."""

    def __init__(self, engine: sa.Engine, settings: LeaseSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or LeaseSettings.from_env()
        self.host = host_id()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}"
        self._skew = 0.0  # the database's clock minus ours, in seconds (PostgreSQL)
        self._held: dict[str, Held] = {}
        self._watched: dict[str, Callable[[str], None]] = {}  # run id -> what to do if its lease is lost
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_error: Callable[[str, Exception], None] | None = None  # a heartbeat that failed
        self.on_lost: Callable[[str, str], None] | None = None  # (run id, new owner)
        self.measure_skew()

    # -- time ---------------------------------------------------------------------------------

    def measure_skew(self) -> None:
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.connect() as conn:
            before = time.time()
            theirs = conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one()
            after = time.time()
        self._skew = float(theirs) - (before + after) / 2

    def now(self) -> dt.datetime:
        """Now by the shared clock (the database's on PostgreSQL)."""
        return dt.datetime.fromtimestamp(time.time() + self._skew, dt.UTC)

    def now_text(self) -> str:
        return iso(self.now())

    def until(self) -> str:
        """When a lease taken or renewed now expires."""
        return iso(self.now() + dt.timedelta(seconds=self.settings.lease_s))

    def lease(self) -> dict[str, Any]:
        """``owner`` and ``expires_at`` of a row this process takes a lease on now (and starts the
        heartbeat that renews it)."""
        self.start()
        return {"owner": self.owner, "expires_at": self.until()}

    def take(self) -> dict[str, Any]:
        """:meth:`lease` plus the ``pid`` and ``host`` columns of runs and slots."""
        return {**self.lease(), "pid": self.pid, "host": self.host}

    # -- other processes' leases ----------------------------------------------------------------

    def expired(self, row: Any, *, stale_s: float | None = None) -> bool:
        """Whether the lease on ``row`` (with ``owner``, ``expires_at``, and ``pid``/``host`` when
        the table has them) is over: its time passed, or its process on this host is gone.

        A row from before leases (no ``expires_at``) is judged by its pid on this host; on another
        host it counts as live unless ``stale_s`` says how old a ``claimed_at`` may be."""
        get = row.get if isinstance(row, dict) else lambda name: getattr(row, name, None)
        owner = get("owner")
        host, pid = get("host"), get("pid")
        if (host is None or pid is None) and owner and ":" in owner:
            host, _, pid_text = owner.rpartition(":")
            pid = int(pid_text) if pid_text.isdigit() else None
        if host == self.host and pid == self.pid:
            return False  # this process's own
        expires = get("expires_at")
        if expires is not None and str(expires) < self.now_text():
            return True
        if host == self.host and pid is not None and not pid_alive(int(pid)):
            return True  # its process is gone: no need to wait for the lease
        if expires is None and stale_s is not None and get("claimed_at") is not None:
            return time.time() - float(get("claimed_at")) > stale_s
        return False

    # -- the heartbeat ----------------------------------------------------------------------------

    def hold(self, table: sa.Table, active: Any = None) -> None:
        """Renew the leases of ``table``'s rows this process owns on every heartbeat (a plugin's
        claims table: it needs ``owner`` and ``expires_at`` columns)."""
        with self._lock:
            self._held.setdefault(table.name, Held(table, active))

    def watch(self, run_id: str, on_lost: Callable[[str], None]) -> None:
        """Call ``on_lost(new owner)`` if a heartbeat finds ``run_id`` owned by another process."""
        with self._lock:
            self._watched[run_id] = on_lost

    def unwatch(self, run_id: str) -> None:
        with self._lock:
            self._watched.pop(run_id, None)

    def start(self) -> None:
        """Start the heartbeat thread, if it is not running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="engine-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                self.renew()
            except Exception as exc:  # an unreachable database: try again next beat
                if self.on_error is not None:
                    self.on_error("lease.renew_failed", exc)

    def renew(self) -> int:
        """Push this process's leases forward; returns how many rows were renewed."""
        self.measure_skew()
        until = self.until()
        renewed = 0
        with self._lock:
            held = list(self._held.values())
            watched = dict(self._watched)
        with self.engine.begin() as conn:
            for item in held:
                where = [item.table.c.owner == self.owner]
                if item.active is not None:
                    where.append(item.active)
                renewed += conn.execute(item.table.update().where(*where).values(expires_at=until)).rowcount
            if watched and "runs" in self._held:
                runs = self._held["runs"].table
                rows = conn.execute(sa.select(runs.c.id, runs.c.owner).where(runs.c.id.in_(list(watched)))).all()
                lost = [(r.id, r.owner) for r in rows if r.owner != self.owner]
            else:
                lost = []
        for run_id, owner in lost:
            self.unwatch(run_id)
            if self.on_lost is not None:
                self.on_lost(run_id, owner)
            watched[run_id](owner)
        return renewed
