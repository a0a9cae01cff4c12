"""Workspaces: isolated sets of policies, runs, schedules, deliveries, reports and audit log.

A workspace is a state directory of its own: ``default`` is the state directory itself (where
every run recorded before workspaces existed already lives), and workspace ``W`` is
``<state dir>/workspaces/W/``. Nothing a query forgets can cross from one to another: each has
its own database, artifacts, previews, audit chain and quota counts. Policy ids are unique per
workspace. API tokens are the one thing kept at the top (the ``default`` database), since a
token is looked up before its workspace is known.

The CLI works in ``ENGINE_WORKSPACE`` (default ``default``); the server opens the workspace of
each request's token.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UsageError

DEFAULT = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_name(name: str, where: str = "workspace") -> str:
    """``name`` if it can name a workspace (letters, digits, ``_``, ``-``; at most 64), else UsageError."""
    if not _NAME.match(name or ""):
        raise UsageError(
            f"{where} {name!r}: a workspace name is letters, digits, '_' and '-' (at most 64), "
            "starting with a letter or digit"
        )
    return name


def current_workspace() -> str:
    """The CLI's workspace: ``ENGINE_WORKSPACE``, or ``default``."""
    return check_name(os.environ.get("ENGINE_WORKSPACE") or DEFAULT, "ENGINE_WORKSPACE")


def root_state_dir(state_dir: str | Path | None = None) -> Path:
    """The top state directory: ``state_dir``, ``ENGINE_STATE_DIR`` or ``./.engine``."""
    return Path(state_dir or os.environ.get("ENGINE_STATE_DIR") or ".engine")


def state_dir_for(root: str | Path, workspace: str) -> Path:
    """Where ``workspace`` keeps its state under the top state directory ``root``."""
    check_name(workspace)
    return Path(root) if workspace == DEFAULT else Path(root) / "workspaces" / workspace


def db_url_for(workspace: str) -> str | None:
    """``ENGINE_DB_URL`` for the default workspace. Other workspaces keep their own SQLite
    database in their directory (a shared server database per workspace comes with PostgreSQL)."""
    url = os.environ.get("ENGINE_DB_URL") or None
    if url and workspace != DEFAULT and not url.startswith("sqlite"):
        raise UsageError(
            f"workspace {workspace!r}: with ENGINE_DB_URL set, only the 'default' workspace is available for now "
            "(unset ENGINE_DB_URL to keep each workspace in its own state directory)"
        )
    return url if workspace == DEFAULT else None


def existing(root: str | Path) -> list[str]:
    """The workspaces that have state under ``root`` (``default`` first)."""
    base = Path(root) / "workspaces"
    names = [DEFAULT]
    if base.is_dir():
        names += sorted(p.name for p in base.iterdir() if p.is_dir() and _NAME.match(p.name) and p.name != DEFAULT)
    return names
