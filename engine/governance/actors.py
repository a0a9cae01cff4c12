"""Who does something: ``ENGINE_ACTOR``, else the operating-system user as ``user:<name>``.

The server (a later face) passes the API token's name instead. Every policy version, approval,
run and audit entry records its actor.
"""

from __future__ import annotations

import getpass
import os

ACTOR_ENV = "ENGINE_ACTOR"
MAX_ACTOR_LENGTH = 200


def current_actor() -> str:
    """The actor of this process: ``$ENGINE_ACTOR`` when set, else ``user:<login name>``."""
    explicit = os.environ.get(ACTOR_ENV, "").strip()
    if explicit:
        return explicit[:MAX_ACTOR_LENGTH]
    try:
        name = getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        name = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"user:{name}"[:MAX_ACTOR_LENGTH]
