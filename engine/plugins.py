"""Finding step plugins: the ``engine.steps`` entry point group, ``--plugin`` and ``ENGINE_PLUGINS``.

Importing a module that defines ``Step`` subclasses is all it takes to register them. Entry
points are imported when they are needed, not at start-up: a plugin package names one entry
point per step type and alias (``"fetch.http" = "steps.fetch"``) and one per policy section in
``engine.policy_sections`` (``allowed_hosts = "steps.fetch"``), so a policy that uses
``core.value`` imports ``steps.core`` and nothing else. Reading the entry points costs a few
milliseconds (installed metadata, no import); a name no entry point claims imports every entry
point module once, so a plugin whose entry point has another name still works, only slower.
``ENGINE_PLUGINS`` and ``--plugin`` modules are imported at once.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from functools import cache

from .errors import RegistryError

ENTRY_POINT_GROUP = "engine.steps"
SECTION_GROUP = "engine.policy_sections"
_loaded: set[str] = set()
_everything = False


def load_plugins(extra_modules: Iterable[str] = ()) -> None:
    """Import ``ENGINE_PLUGINS``, then ``extra_modules`` (``--plugin``); entry points load on use."""
    env = os.environ.get("ENGINE_PLUGINS", "")
    for name in (m.strip() for m in env.split(",")):
        if name:
            _import(name, "ENGINE_PLUGINS")
    for name in extra_modules:
        _import(name, "--plugin")


def load_all() -> None:
    """Import every entry point module (listing every step type, the full schema)."""
    global _everything
    if _everything:
        return
    for name, module in _entry_points(ENTRY_POINT_GROUP) + _entry_points(SECTION_GROUP):
        _import(module, f"entry point {name!r}")
    _everything = True


def load_step_type(name: str) -> None:
    """Import the module that registers step type (or alias) ``name``; every module if none claims it."""
    _load_for(name, ENTRY_POINT_GROUP)


def load_section(name: str) -> None:
    """Import the module that declares policy section ``name``; every module if none claims it."""
    _load_for(name, SECTION_GROUP)


def _load_for(name: str, group: str) -> None:
    claimed = [(ep, module) for ep, module in _entry_points(group) if ep == name]
    if not claimed:
        load_all()
    for ep, module in claimed:
        _import(module, f"entry point {ep!r}")


@cache
def _entry_points(group: str) -> list[tuple[str, str]]:
    from importlib.metadata import entry_points

    return [(ep.name, ep.value.split(":")[0]) for ep in entry_points(group=group)]


def _import(module: str, source: str) -> None:
    if module in _loaded:
        return
    try:
        importlib.import_module(module)
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(f"cannot import step plugin module {module!r} (from {source}): {exc}") from exc
    _loaded.add(module)
