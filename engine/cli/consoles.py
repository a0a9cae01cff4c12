"""The command line's two rich consoles, made on first use: importing rich costs start-up time that
``engine --help`` and ``engine validate`` do not need to spend."""

from __future__ import annotations

import sys
from typing import Any


class LazyConsole:
    """A ``rich.console.Console`` for stdout or stderr, created when first used."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            stream = sys.stderr if self._stderr else sys.stdout
            # off a terminal, rich would wrap at 80 columns; keep lines whole for logs and pipes
            self._console = Console(stderr=self._stderr, highlight=False, width=None if stream.isatty() else 200)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)
