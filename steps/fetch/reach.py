"""Which local files ``fetch.file`` and ``fetch.sql`` may read.

- The engine's **state directory** (its database, every run's artifacts and previews, its log)
  is never read, whatever the configuration says: a policy must not read other runs' outputs or
  the cache of another policy's responses.
- ``[fetch] allowed_paths`` in the engine configuration, when set, lists the only folders (and
  their subfolders) the fetch steps may read. Relative entries in ``engine.toml`` are taken from
  the folder of that file; from ``ENGINE_FETCH_ALLOWED_PATHS`` (a JSON list, or folders separated
  by commas) from the current directory. Unset: no restriction besides the state directory, so
  existing policies keep working.

Paths are compared after resolving ``~``, ``..`` and symlinks (``realpath``), and the step reads
the resolved path, so a symlink cannot lead it out once checked. Steps check a literal path when
the policy is validated and every path when they run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from engine import CheckContext, ConfigError, EngineConfig, Problem, StepError, is_expression

from .envelope import resolve_path

STATE_HINT = "copy the data elsewhere"
HINT = "add its folder to [fetch] allowed_paths in engine.toml, or to ENGINE_FETCH_ALLOWED_PATHS"


def realpath(path: Path | str) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def allowed_paths(config: EngineConfig) -> list[Path] | None:
    """The folders of ``[fetch] allowed_paths``, resolved; ``None`` when it is not set."""
    section = config.section("fetch")
    if "allowed_paths" not in section:
        return None
    value = section["allowed_paths"]
    from_file = config.path is not None and config.data.get("fetch", {}).get("allowed_paths") == value
    base = config.path.parent if from_file and config.path is not None else Path.cwd()
    if isinstance(value, str):  # ENGINE_FETCH_ALLOWED_PATHS=/srv/data,/srv/exports
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(
            f"{config.where('fetch')}: allowed_paths: must be a list of folders, e.g. ['data', '/srv/exports']"
        )
    return [realpath(base / Path(item).expanduser()) for item in value]


def state_dirs(run_state_dir: Path | None = None) -> list[Path]:
    """The engine's state directory: the run's own when known (at run time), and the one the CLI
    uses by default (``$ENGINE_STATE_DIR``, else ``./.engine``), and ``$ENGINE_ARTIFACTS_DIR``; plus the SQLite file of
    ``$ENGINE_DB_URL`` when the database lives elsewhere."""
    found = [realpath(run_state_dir)] if run_state_dir is not None else []
    default = realpath(os.environ.get("ENGINE_STATE_DIR") or ".engine")
    if default not in found:
        found.append(default)
    shared = os.environ.get("ENGINE_ARTIFACTS_DIR")  # the artifacts folder on a shared mount
    if shared and realpath(shared) not in found:
        found.append(realpath(shared))
    db_url = os.environ.get("ENGINE_DB_URL", "")
    if db_url.startswith("sqlite:///"):
        database = unquote(urlsplit(db_url).path)[1:]  # sqlite:///rel.db, sqlite:////abs/x.db
        if database and database != ":memory:":
            found.extend(realpath(database + suffix) for suffix in ("", "-wal", "-shm", "-journal"))
    return found


def refusal(
    path: str, policy_dir: Path | None, config: EngineConfig, run_state_dir: Path | None = None
) -> tuple[Path, str | None, str]:
    """The resolved path, why it may not be read (``None`` when it may), and how to fix that."""
    target = realpath(resolve_path(path, policy_dir))
    for state in state_dirs(run_state_dir):
        if inside(target, state):
            why = f"{path!r} ({target}) is inside the engine's own state ({state}), which fetch steps never read"
            return target, why, STATE_HINT
    roots = allowed_paths(config)
    if roots is not None and not any(inside(target, root) for root in roots):
        listed = ", ".join(str(root) for root in roots) or "none"
        return target, f"{path!r} ({target}) is outside [fetch] allowed_paths (allowed: {listed})", HINT
    return target, None, ""


def check(params: dict[str, Any], name: str, where: CheckContext) -> list[Problem]:
    """Validation of a literal path param (an expression or a template is checked at run time)."""
    path = params.get(name)
    if not isinstance(path, str) or is_expression(path) or "{{" in path:
        return []
    _target, why, hint = refusal(path, where.policy_dir, where.config)
    return [] if why is None else [Problem(f"/{name}", why, hint)]


def checked(path: str, pointer: str, policy_dir: Path | None, config: EngineConfig, state_dir: Path) -> Path:
    """The resolved path to read, or a StepError naming the param's pointer."""
    target, why, hint = refusal(path, policy_dir, config, state_dir)
    if why is not None:
        raise StepError(f"{pointer}: {why}: {hint}", retryable=False)
    return target
