"""The service layer: one function per action, called by every face (CLI, REST API, MCP, web UI).

Each action takes a :class:`Workspace` (the store and configuration of one workspace) and a
:class:`Caller` (who asks, with which role), checks the caller's role once
(:func:`engine.service.access.require`), calls the governance and run library, and raises the
engine's own errors (:class:`~engine.errors.NotFound`, :class:`~engine.errors.Forbidden`,
:class:`~engine.errors.Conflict`, :class:`~engine.errors.NotApproved`,
:class:`~engine.errors.QuotaExceeded`, :class:`~engine.errors.PolicyError`), which each face
translates once (HTTP statuses in ``engine.server.errors``, exit codes in the CLI).
"""

from .access import Caller as Caller
from .access import require as require
from .workspace import Workspace as Workspace

__all__ = ["Caller", "Workspace", "require"]
