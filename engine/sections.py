"""Top-level policy sections that plugins add, such as ``allowed_hosts`` or ``rate_limits``.

The core policy fields are fixed (:mod:`engine.policy`). A plugin that needs a setting shared
by several steps of one policy declares a section once, at import time::

    from engine import policy_section

    policy_section("allowed_hosts", list[str], "Hosts fetch.http may reach.", default=[])

``engine validate`` then accepts the key at the top of a policy, checks its value against the
type (every problem with its JSON pointer), and lists it in the policy schema; a running step
reads the validated value from ``ctx.sections["allowed_hosts"]`` (the default when the policy
does not set it). The engine gives no meaning to any section.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from .errors import RegistryError


@dataclass(frozen=True)
class PolicySection:
    name: str
    annotation: Any
    description: str
    default: Any
    owner: str

    @property
    def adapter(self) -> TypeAdapter[Any]:
        return _adapters.setdefault(self.name, TypeAdapter(self.annotation))


_sections: dict[str, PolicySection] = {}
_adapters: dict[str, TypeAdapter[Any]] = {}


def policy_section(name: str, annotation: Any, description: str, *, default: Any = None) -> None:
    """Declare a top-level policy key ``name`` whose value has type ``annotation``.

    Declaring the same name again with the same type (a re-imported module) is allowed; with a
    different type it raises :class:`RegistryError` naming both modules.
    """
    from .policy import Policy

    if name in Policy.model_fields or name in {f.alias for f in Policy.model_fields.values() if f.alias}:
        raise RegistryError(f"policy section {name!r} is a core policy field")
    caller = sys._getframe(1)
    owner = f"{caller.f_globals.get('__name__', '?')}:{caller.f_lineno}"
    existing = _sections.get(name)
    if existing is not None and existing.annotation != annotation:
        raise RegistryError(f"policy section {name!r} is declared twice: by {existing.owner} and by {owner}")
    _sections[name] = PolicySection(name, annotation, description, default, owner)
    _adapters.pop(name, None)


def sections() -> dict[str, PolicySection]:
    """Every section declared so far, by name (``plugins.load_all()`` first for every installed one)."""
    return dict(sorted(_sections.items()))


def get(name: str) -> PolicySection | None:
    """The section called ``name``, importing the plugin module that declares it on first use."""
    if name not in _sections:
        from . import plugins

        plugins.load_section(name)
    return _sections.get(name)
