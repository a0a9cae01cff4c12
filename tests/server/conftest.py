"""A real ``engine server`` application served by uvicorn on 127.0.0.1 (in a thread of the test
process, so the schedulers' clock can be faked), real state (SQLite, and PostgreSQL through
ENGINE_DB_URL: the ``db_url`` fixture of tests/conftest.py), httpx clients with tokens."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from engine import logs
from engine.config import EngineConfig
from engine.governance import tokens
from engine.server.app import create_app
from engine.server.context import ServerContext
from engine.store import Store
from engine.workspaces import DEFAULT, db_url_for


class FakeClock:
    """The schedulers' clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


@dataclass
class LiveServer:
    url: str
    root: Path
    context: ServerContext
    clock: FakeClock
    _clients: list[httpx.Client] = field(default_factory=list)

    def token(self, name: str, role: str, workspace: str = "default", expires: dt.timedelta | None = None) -> str:
        store = Store(self.root, db_url_for(DEFAULT))  # tokens live in the default workspace
        try:
            text, _ = tokens.create(
                store.engine, name=name, role=role, workspace=workspace, actor="test-admin", expires=expires
            )
        finally:
            store.close()
        return text

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=30)
        self._clients.append(client)
        return client

    def as_role(self, role: str, workspace: str = "default", name: str | None = None) -> httpx.Client:
        return self.client(self.token(name or f"{role}-{workspace}", role, workspace))

    def wait_run(self, client: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = client.get(f"/runs/{run_id}").json()
            if run["status"] != "RUNNING":
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} still RUNNING after {timeout} s")


@pytest.fixture
def start_server(tmp_path: Path, db_url: str | None) -> Iterator[Callable[..., LiveServer]]:
    started: list[tuple[uvicorn.Server, threading.Thread, LiveServer]] = []

    def start(
        folders: list[Path] | None = None,
        config: EngineConfig | None = None,
        scheduler: bool = True,
        max_runs: int = 4,
    ) -> LiveServer:
        root = tmp_path / f"state{len(started)}"
        root.mkdir()
        clock = FakeClock()
        context = ServerContext(
            root=root,
            config=config if config is not None else EngineConfig({}, None, {}),
            folders=list(folders or []),
            max_runs=max_runs,
            clock=clock,
        )
        logs.configure(root, console=False, console_level=logging.WARNING)  # as 'engine server' does
        app = create_app(context, scheduler=scheduler, grace_s=5)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        live = LiveServer(f"http://127.0.0.1:{port}", root, context, clock)
        started.append((server, thread, live))
        return live

    yield start
    for server, thread, live in started:
        for client in live._clients:
            client.close()
        server.should_exit = True
        thread.join(timeout=30)
    logs.close()


def hello(policy_id: str = "hello", value: Any = "hi", steps: int = 1, **extra: Any) -> dict[str, Any]:
    """A small valid policy: a chain of core.value steps."""
    chain = [{"id": "s1", "type": "core.value", "params": {"value": value}}]
    for i in range(2, steps + 1):
        chain.append({"id": f"s{i}", "type": "core.value", "params": {"value": i}, "depends_on": [f"s{i - 1}"]})
    return {"schema_version": 1, "id": policy_id, "steps": chain, **extra}


def sse_events(client: httpx.Client, path: str, timeout: float = 60) -> list[tuple[str, Any]]:
    """Read a server-sent event stream to its end: ``[(event, data), ...]``."""
    import json

    events: list[tuple[str, Any]] = []
    with client.stream("GET", path, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        name, data = None, []
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and name is not None:
                events.append((name, json.loads("\n".join(data))))
                name, data = None, []
    return events
