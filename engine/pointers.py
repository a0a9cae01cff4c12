"""JSON pointers (RFC 6901): how every problem names its place in the policy."""

from __future__ import annotations

from collections.abc import Iterable


def escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def join(base: str, *tokens: str | int) -> str:
    """``join("/steps/3", "params", "path") == "/steps/3/params/path"``."""
    return base + "".join("/" + escape(t) for t in tokens)


def from_loc(loc: Iterable[str | int], base: str = "") -> str:
    """Turn a pydantic error ``loc`` tuple into a pointer below ``base``."""
    return join(base, *loc)
