"""Handing a prepared run from a route (a worker thread) to the executor (on the event loop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyio.from_thread import run_sync as on_loop

from .auth import Session


def launcher(s: Session) -> Callable[[Any], None]:
    executor = s.server.executor
    assert executor is not None, "the server's run executor starts with the application"

    def launch(prepared: Any) -> None:
        on_loop(executor.submit, prepared)

    return launch


def canceller(s: Session) -> Callable[[str, str], bool]:
    def cancel(run_id: str, reason: str) -> bool:
        return bool(on_loop(s.server.cancel, run_id, reason))

    return cancel


def links(run_id: str) -> dict[str, str]:
    base = f"/api/v1/runs/{run_id}"
    return {"run": base, "events": f"{base}/events", "logs": f"{base}/logs"}
