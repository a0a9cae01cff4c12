"""One workspace's store and configuration, as the actions use them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import EngineConfig
from ..store import Store


@dataclass
class Workspace:
    """The state of one workspace (:mod:`engine.workspaces`) and the settings actions follow.

    ``approval_default`` is ``[governance] require_approval`` when the configuration does not set
    it (true for ``engine server``); ``folders`` are the file-backed policy folders of the
    workspace (their policies are edited in the files, never through the API).
    """

    name: str
    store: Store
    config: EngineConfig
    approval_default: bool = False
    folders: list[Path] = field(default_factory=list)
