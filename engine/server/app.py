"""The FastAPI application of ``engine server``: the REST API under ``/api/v1``, the run executor
and the schedulers of every workspace, started and stopped with the application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from .. import __version__
from ..logs import get_logger
from ..service.executor import RunExecutor
from ..workspaces import existing
from . import errors
from .context import ServerContext
from .limits import BodyLimit

API = "/api/v1"


def create_app(server: ServerContext, *, scheduler: bool = True, grace_s: float = 30.0) -> FastAPI:
    from starlette.routing import Route

    from .mcp import http_endpoint

    mcp_endpoint, mcp_sessions = http_endpoint(server)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with mcp_sessions.run():
            async with _engine_lifespan():
                yield

    @contextlib.asynccontextmanager
    async def _engine_lifespan() -> AsyncIterator[None]:
        server.executor = RunExecutor(server.max_runs)
        supervisor = _Schedulers(server, run_slots=scheduler, grace_s=grace_s)
        task = asyncio.ensure_future(supervisor.run())
        get_logger().info(
            "server.started", state_dir=str(server.root), folders=[str(f) for f in server.folders], scheduler=scheduler
        )
        try:
            yield
        finally:
            get_logger().info("server.stopping", grace_s=grace_s)
            await supervisor.stop(grace_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await server.executor.shutdown(grace_s)
            server.close()

    app = FastAPI(
        title="policy-engine",
        version=__version__,
        description="Policies, runs, approvals, schedules and history of the engine (docs/server.md).",
        openapi_url=f"{API}/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.server = server
    errors.install(app)
    from .routes import approvals, audit, policies, reports, runs, schedules

    for module in (policies, approvals, runs, schedules, reports, audit):
        app.include_router(module.router, prefix=API)
    _install_ui(app)
    # MCP over streamable HTTP, with the same bearer tokens, roles and workspaces (engine.server.mcp)
    app.router.routes.append(Route("/mcp", endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"]))
    app.add_middleware(BodyLimit)
    _document_policy_schema(app)

    @app.get(f"{API}/health", tags=["server"])
    def health() -> dict[str, Any]:
        """No token needed: the server is up (for load balancers and tests)."""
        return {"ok": True, "version": __version__}

    return app


def _install_ui(app: FastAPI) -> None:
    """The web UI at / (engine.server.ui): pages, static files, sessions, login redirects."""
    from fastapi.staticfiles import StaticFiles

    from .ui import pages
    from .ui.render import HERE
    from .ui.session import LoginRequired, Sessions

    app.state.web_sessions = Sessions()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in pages.page_modules():
        app.include_router(module.router)
    app.add_exception_handler(LoginRequired, pages.login_redirect)  # type: ignore[arg-type]


def _document_policy_schema(app: FastAPI) -> None:
    """The OpenAPI document names the policy JSON Schema as the body of the policy routes."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = original()
        document.setdefault("components", {}).setdefault("schemas", {})["PolicyDocument"] = {
            "type": "object",
            "description": "A policy document: see policies/policy.schema.json ('engine schema') and docs/policy.md.",
            "required": ["id", "steps"],
        }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


class _Schedulers:
    """One scheduler per workspace (the folders' workspace also runs its files), started as
    workspaces appear; with ``run_slots`` false, only the folders are synced into the registry."""

    def __init__(self, server: ServerContext, run_slots: bool, grace_s: float) -> None:
        self.server = server
        self.grace_s = grace_s
        self.run_slots = run_slots
        self.stop_event = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.schedulers: list[Any] = []
        self.failed: set[str] = set()

    async def run(self) -> None:
        from ..scheduler import Scheduler

        log = get_logger()
        while not self.stop_event.is_set():
            names = set(existing(self.server.root)) | {self.server.folder_workspace}
            for name in sorted(names - self.tasks.keys() - self.failed):
                try:
                    ws = self.server.workspace(name)
                except Exception as exc:  # one workspace that cannot open never stops the others
                    self.failed.add(name)
                    log.error("server.workspace_error", workspace=name, error=f"{type(exc).__name__}: {exc}")
                    continue
                extra = {"clock": self.server.clock} if self.server.clock is not None else {}
                scheduler = Scheduler(
                    ws.store, ws.folders, ws.config, from_registry=True, approval_default=ws.approval_default, **extra
                )
                self.schedulers.append(scheduler)
                self.server.schedulers.append(scheduler)
                work = scheduler.serve(self.stop_event, self.grace_s) if self.run_slots else self._sync(scheduler)
                self.tasks[name] = asyncio.ensure_future(work)
                log.info("server.workspace", workspace=name, scheduling=self.run_slots)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), timeout=2.0)

    async def _sync(self, scheduler: Any) -> None:
        """--no-scheduler: keep recording the folders' new and edited files as policy versions."""
        while not self.stop_event.is_set():
            try:
                scheduler.load()
            except Exception as exc:
                get_logger().error("server.sync_error", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), timeout=1.0)

    async def stop(self, grace_s: float) -> None:
        for scheduler in self.schedulers:
            scheduler.stopping = True
        self.stop_event.set()
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks.values()), timeout=grace_s + 5)
            for task in pending:
                task.cancel()
