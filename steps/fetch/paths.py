"""Dotted paths into parsed JSON: ``data.items``, ``pages.0.rows`` (a leading ``$.`` is allowed)."""

from __future__ import annotations

from typing import Any

_MISSING = object()


def split(path: str) -> list[str]:
    text = path[2:] if path.startswith("$.") else path.lstrip("$")
    return [p for p in text.replace("[", ".").replace("]", "").split(".") if p]


def lookup(document: Any, path: str, default: Any = _MISSING) -> Any:
    """The value at ``path``; a missing key raises ``KeyError`` naming where, unless ``default`` is given."""
    current = document
    parts = split(path)
    for i, key in enumerate(parts):
        if isinstance(current, dict) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.lstrip("-").isdigit() and -len(current) <= int(key) < len(current):
            current = current[int(key)]
        else:
            if default is not _MISSING:
                return default
            where = ".".join(parts[:i]) or "the top level"
            raise KeyError(f"{key!r} not found at {where}")
    return current
