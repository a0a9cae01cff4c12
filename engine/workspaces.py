"""Workspaces: isolated sets of policies, runs, schedules, deliveries, reports and audit log.

A workspace is a state directory of its own: ``default`` is the state directory itself (where
every run recorded before workspaces existed already lives), and workspace ``W`` is
``<state dir>/workspaces/W/``. Nothing a query forgets can cross from one to another: each has
its own database, artifacts, previews, audit chain and quota counts. Policy ids are unique per
workspace. API tokens are the one thing kept at the top (the ``default`` database), since a
token is looked up before its workspace is known. With ``ENGINE_DB_URL`` on PostgreSQL, the
database is shared and each workspace other than ``default`` is a schema of its own in it
(:func:`db_url_for`); the files (previews, logs) stay in the state directories, and the
artifacts too unless ``ENGINE_ARTIFACTS_DIR`` moves them (:func:`artifacts_dir_for`).

The CLI works in ``ENGINE_WORKSPACE`` (default ``default``); the server opens the workspace of
each request's token.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

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
    """The database URL of ``workspace``: None for its own SQLite file in its state directory,
    else ``ENGINE_DB_URL``. ``ENGINE_DB_URL`` is the default workspace's database; on PostgreSQL
    every other workspace is a schema of the same database (:func:`schema_for`, created on first
    use), chosen by the connection's ``search_path``. A SQLite ``ENGINE_DB_URL`` serves the
    default workspace alone: the others keep their own SQLite file."""
    url = os.environ.get("ENGINE_DB_URL") or None
    if url is None or workspace == DEFAULT:
        return url
    check_name(workspace)
    if url.startswith("sqlite"):
        return None
    if not url.startswith("postgresql"):
        raise UsageError(
            f"workspace {workspace!r}: with ENGINE_DB_URL set to a database other than SQLite or PostgreSQL, "
            "only the 'default' workspace is available (unset ENGINE_DB_URL to keep each workspace in its "
            "own state directory)"
        )
    return with_search_path(url, schema_for(workspace))


def artifacts_dir_for(workspace: str) -> Path | None:
    """Where ``workspace`` keeps its artifacts when ``ENGINE_ARTIFACTS_DIR`` moves them to a folder
    every host reaches: that folder for ``default``, ``<it>/workspaces/W`` for the others; None
    (``<state dir>/artifacts``) when it is not set."""
    shared = os.environ.get("ENGINE_ARTIFACTS_DIR")
    if not shared:
        return None
    check_name(workspace)
    return Path(shared) if workspace == DEFAULT else Path(shared) / "workspaces" / workspace


def schema_for(workspace: str) -> str:
    """The PostgreSQL schema of a workspace other than ``default``: ``ws_<name>`` (case kept, so
    written quoted), the name shortened with a hash when it would pass PostgreSQL's 63 bytes."""
    name = check_name(workspace)
    if len(name) > 60:
        name = f"{name[:43]}_{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    return f"ws_{name}"


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (the libpq ``options`` parameter ``-c search_path``)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    before = " ".join(v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "options")
    options = f'{before} -csearch_path="{schema}"'.strip()
    return urlunsplit(parts._replace(query=urlencode([*query, ("options", options)], quote_via=quote)))


def existing(root: str | Path) -> list[str]:
    """The workspaces that have state under ``root`` (``default`` first)."""
    base = Path(root) / "workspaces"
    names = [DEFAULT]
    if base.is_dir():
        names += sorted(p.name for p in base.iterdir() if p.is_dir() and _NAME.match(p.name) and p.name != DEFAULT)
    return names
