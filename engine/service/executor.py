"""Background runs of a long-lived process (``engine server``): at most N at once, cancellable.

A run is prepared (recorded, admitted) by the action that asks for it and handed here; it waits
for one of the N places, then executes as any run does (same state machine, same resume). On
shutdown, running steps get a grace period, then the runs are cancelled, as ``engine serve`` does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..api import PreparedRun
from ..logs import get_logger
from ..runner import Runner


class RunExecutor:
    def __init__(self, max_runs: int = 4) -> None:
        self.max_runs = max_runs
        self._places = asyncio.Semaphore(max_runs)
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.runners: dict[str, Runner] = {}
        self._cancelled: dict[str, str] = {}  # cancelled while waiting for a place
        self.stopping = False

    def submit(self, prepared: PreparedRun) -> None:
        run_id = prepared.run_id
        task = asyncio.ensure_future(self._run(prepared))
        self.tasks[run_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(run_id, None))

    async def _run(self, prepared: PreparedRun) -> None:
        run_id = prepared.run_id
        async with self._places:
            reason = self._cancelled.pop(run_id, None)

            def keep(runner: Runner) -> None:
                self.runners[run_id] = runner
                if reason is not None:  # cancelled while it waited: stops as soon as it starts
                    asyncio.get_running_loop().call_soon(runner.cancel, reason)

            try:
                await prepared.execute(keep)
            except Exception as exc:  # recorded by the runner; logged here so nothing is silent
                get_logger().bind(run_id=run_id).error("server.run_error", error=f"{type(exc).__name__}: {exc}")
            finally:
                self.runners.pop(run_id, None)

    def running_here(self, run_id: str) -> bool:
        return run_id in self.tasks

    def cancel(self, run_id: str, reason: str) -> bool:
        """Cancel a run this process executes (or is about to); False when it is not here."""
        runner = self.runners.get(run_id)
        if runner is not None:
            runner.cancel(reason)
            return True
        if run_id in self.tasks:
            self._cancelled[run_id] = reason
            return True
        return False

    async def shutdown(self, grace_s: float, process: str = "engine server") -> None:
        self.stopping = True
        tasks = list(self.tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        if pending:
            for run_id in list(self.tasks):
                self.cancel(run_id, f"cancelled: {process} stopped, grace period of {grace_s:g} s over")
            await asyncio.gather(*pending, return_exceptions=True)
