"""``engine mcp``: the MCP tools over stdin/stdout, for a desktop agent on this machine."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import click

from . import cli, interrupts, state_dir_option


@cli.command("mcp")
@click.option("--workers-runs", default=4, show_default=True, type=click.IntRange(min=1), help="Runs executed at once.")
@state_dir_option
@click.pass_context
def mcp_command(ctx: click.Context, workers_runs: int, state_dir: Path | None) -> None:
    """Serve the MCP tools over stdio (for a desktop agent): author, check, dry-run and preview
    policies, and run the versions a person approved. The actor is mcp:<ENGINE_ACTOR or your
    login>, the workspace ENGINE_WORKSPACE (default 'default'); logs go to the state directory's
    logs/engine.log and stderr, never stdout (the protocol's channel). See docs/mcp.md."""
    import anyio

    from .. import logs
    from ..config import EngineConfig
    from ..server.mcp import serve_stdio
    from ..service import Caller, Workspace
    from ..workspaces import current_workspace
    from . import _store

    workspace = current_workspace()
    store = _store(ctx, state_dir)
    logs.configure(store.state_dir, console=False, console_level=30)  # warnings and errors on stderr
    name = os.environ.get("ENGINE_ACTOR", "").strip() or _login()
    caller = Caller(actor=f"mcp:{name}", role="author", workspace=workspace)
    ws = Workspace(workspace, store, EngineConfig.load(), approval_default=True)
    try:
        interrupts.collect_garbage()
        anyio.run(serve_stdio, ws, caller, workers_runs)
    finally:
        logs.close()
        store.close()


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"
