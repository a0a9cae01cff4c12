"""What the running server holds: the top state directory, each workspace's store, the run
executor, the schedulers. One per process, stored on ``app.state.server``."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import EngineConfig
from ..service import Workspace
from ..service.executor import RunExecutor
from ..store import Store
from ..workspaces import DEFAULT, artifacts_dir_for, check_name, db_url_for, state_dir_for


@dataclass
class ServerContext:
    root: Path  # the top state directory (workspace "default")
    config: EngineConfig
    folders: list[Path] = field(default_factory=list)  # file-backed policies, in folder_workspace
    folder_workspace: str = DEFAULT
    max_runs: int = 4
    approval_default: bool = True  # [governance] require_approval defaults to true for the server
    executor: RunExecutor | None = None
    clock: Callable[[], dt.datetime] | None = None  # the schedulers' clock (tests fake it)
    schedulers: list[Any] = field(default_factory=list)  # one per workspace, once started
    _workspaces: dict[str, Workspace] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def workspace(self, name: str) -> Workspace:
        """The workspace's store, opened once (created on first use)."""
        found = self._workspaces.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._workspaces.get(name)
            if found is None:
                check_name(name)
                store = Store(state_dir_for(self.root, name), db_url_for(name), artifacts_dir_for(name))
                found = Workspace(
                    name,
                    store,
                    self.config,
                    approval_default=self.approval_default,
                    folders=self.folders if name == self.folder_workspace else [],
                )
                self._workspaces[name] = found
        return found

    @property
    def tokens_store(self) -> Store:
        """API tokens live at the top (the default workspace's database)."""
        return self.workspace(DEFAULT).store

    @property
    def log_file(self) -> Path:
        return self.root / "logs" / "engine.log"

    def cancel(self, run_id: str, reason: str) -> bool:
        """Cancel a run this process executes: started through the API, or by a scheduler here."""
        if self.executor is not None and self.executor.cancel(run_id, reason):
            return True
        for scheduler in self.schedulers:
            runner = scheduler.runners.get(run_id)
            if runner is not None:
                runner.cancel(reason)
                return True
        return False

    def opened(self) -> list[Workspace]:
        return list(self._workspaces.values())

    def close(self) -> None:
        for ws in self._workspaces.values():
            ws.store.close()
        self._workspaces.clear()
