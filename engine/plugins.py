"""Finding step plugins: the ``engine.steps`` entry point group, ``--plugin`` and ``ENGINE_PLUGINS``.

Importing a module that defines ``Step`` subclasses is all it takes to register them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from importlib.metadata import entry_points

from .errors import RegistryError

ENTRY_POINT_GROUP = "engine.steps"
_loaded: set[str] = set()


def load_plugins(extra_modules: Iterable[str] = ()) -> None:
    """Import every entry point of ``engine.steps``, then ``ENGINE_PLUGINS``, then ``extra_modules``."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _import(ep.value.split(":")[0], f"entry point {ep.name!r}")
    env = os.environ.get("ENGINE_PLUGINS", "")
    for name in (m.strip() for m in env.split(",")):
        if name:
            _import(name, "ENGINE_PLUGINS")
    for name in extra_modules:
        _import(name, "--plugin")


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
