"""Server-sent events of one run: every state transition as it is committed, then the end.

Transitions of runs this process executes come from the store's listeners (each commit, none
missed); runs executed by another process (``engine serve`` on the same database) are polled
every second and each change of a step's state is sent. The stream is::

    event: snapshot   the run and every step's state when the stream starts
    event: step       {"run_id", "step_id", "status", ...the columns that changed}
    event: run        {"run_id", "status", ...} when the run's own row changes
    event: end        the whole run (the shape of GET /runs/{id}), then the stream closes
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread

from ..service import Caller, Workspace, runs
from ..states import RunState

POLL_S = 1.0
# columns of a step's row that are not its state: its output (read it with GET /runs/{id}) and
# what it stages for the policy's state
_NOT_SENT = frozenset({"output_json", "output_hash", "pending_state"})
KEEPALIVE_S = 15.0


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n"


async def run_events(ws: Workspace, caller: Caller, run_id: str) -> AsyncIterator[str]:
    queue: asyncio.Queue[tuple[str | None, dict[str, Any]]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def listener(rid: str, step_id: str | None, values: dict[str, Any]) -> None:
        if rid == run_id:
            sent = {k: v for k, v in values.items() if k not in _NOT_SENT}
            loop.call_soon_threadsafe(queue.put_nowait, (step_id, sent))

    ws.store.listeners.append(listener)
    try:
        snapshot = await to_thread.run_sync(runs.status_of, ws, run_id)
        yield sse("snapshot", snapshot)
        known = {sid: st["status"] for sid, st in snapshot["steps"].items()}
        status = snapshot["status"]
        quiet = 0.0
        while status == RunState.RUNNING.value:
            try:
                step_id, values = await asyncio.wait_for(queue.get(), timeout=POLL_S)
            except TimeoutError:
                now = await to_thread.run_sync(runs.status_of, ws, run_id)
                changed = False
                for sid, st in now["steps"].items():
                    if known.get(sid) != st["status"]:
                        known[sid] = st["status"]
                        changed = True
                        yield sse("step", {"run_id": run_id, "step_id": sid, **st})
                if now["status"] != status:
                    status = now["status"]
                    changed = True
                    yield sse("run", {"run_id": run_id, "status": status, "error": now["error"]})
                quiet = 0.0 if changed else quiet + POLL_S
                if quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield ": keepalive\n\n"
                continue
            quiet = 0.0
            if step_id is None:
                if "status" in values:
                    status = values["status"]
                yield sse("run", {"run_id": run_id, **values})
            else:
                if "status" in values:
                    known[step_id] = values["status"]
                yield sse("step", {"run_id": run_id, "step_id": step_id, **values})
        final = await to_thread.run_sync(runs.show, ws, caller, run_id)
        yield sse("end", final)
    finally:
        ws.store.listeners.remove(listener)
