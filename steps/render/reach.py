"""What a render step may read: which folders a policy may name as its ``template_dir``.

A policy names its ``template_dir`` relative to its own folder. An absolute path, or a relative
one that leaves the folder (``..``, a symlink), is refused unless it is inside a folder of the
engine configuration's ``[render] allowed_template_dirs`` (default: none). The engine's state
directory (its database, every run's artifacts) is never a template folder, nor is a folder that
holds it. Paths are compared after resolving symlinks (``realpath``).

``render.check`` applies these rules to a literal ``template_dir`` when the policy is validated,
and the step again when it runs (a ``template_dir`` from a ref is known only then).
"""

from __future__ import annotations

import os
from pathlib import Path

from engine import ConfigError, EngineConfig

HINT = (
    "write it relative to the policy file, or add the folder to [render] allowed_template_dirs in the "
    "engine configuration"
)
STATE_HINT = "keep templates in a folder of their own"


def realpath(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or below it; both already resolved."""
    return path == folder or path.is_relative_to(folder)


def allowed_template_dirs(config: EngineConfig) -> list[Path]:
    """``[render] allowed_template_dirs``: absolute folders (``ENGINE_RENDER_ALLOWED_TEMPLATE_DIRS``
    is a JSON list, or the folders separated by commas)."""
    value = config.section("render").get("allowed_template_dirs", [])
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    example = "list absolute folders, e.g. ['/srv/report-templates']"
    if not isinstance(value, list):
        raise ConfigError(f"{config.where('render')}: allowed_template_dirs: must be a list; {example}")
    for item in value:
        if not isinstance(item, str) or not Path(item).is_absolute():
            raise ConfigError(
                f"{config.where('render')}: allowed_template_dirs: {item!r} is not an absolute path; {example}"
            )
    return [realpath(item) for item in value]


def state_dirs(run_state_dir: Path | None = None) -> list[Path]:
    """The engine's state directory: the run's own when known, and the one the CLI defaults to
    (``$ENGINE_STATE_DIR``, else ``.engine``) when it exists."""
    found = [realpath(run_state_dir)] if run_state_dir is not None else []
    default = realpath(os.environ.get("ENGINE_STATE_DIR") or ".engine")
    return [*found, default] if default.is_dir() and default not in found else found


def refusal(value: str, policy_dir: Path | None, allowed: list[Path], states: list[Path]) -> tuple[str, str] | None:
    """(message, hint) when a policy may not use ``value`` as its template_dir, else None."""
    base = realpath(policy_dir or Path.cwd())
    path = realpath(base / value)  # an absolute value stays itself
    shown = f"template_dir {value!r} ({path})"
    for state in states:
        if inside(path, state):
            return f"{shown} is inside the engine's state directory ({state})", STATE_HINT
        if inside(state, path):
            return f"{shown} holds the engine's state directory ({state})", STATE_HINT
    if any(inside(path, folder) for folder in allowed):
        return None
    listed = f"[render] allowed_template_dirs: {', '.join(map(str, allowed)) or 'none set'}"
    if Path(value).is_absolute():
        return (
            f"template_dir {value!r} is an absolute path outside the folders the engine configuration allows "
            f"({listed})",
            HINT,
        )
    if not inside(path, base):
        return (
            f"{shown} is outside the policy's folder ({base}) and the folders the engine configuration allows "
            f"({listed})",
            HINT,
        )
    return None
