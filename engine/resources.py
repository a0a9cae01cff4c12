"""Objects the steps of one run share, such as a browser, opened on first use and closed when the run ends.

A step asks with ``await ctx.shared(key, factory)``: the first caller's ``factory()`` (an async
context manager) is entered, later callers of the same run get the same object, and the run
exits every one of them when it ends, however it ends (success, failure, Ctrl-C), in the
reverse order of opening. Closing is bounded: an object that takes longer than
:data:`CLOSE_TIMEOUT_S` to close is left behind with a warning, so a stuck resource never
keeps a run from ending.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # asyncio is imported when a run uses a shared object: `engine validate` never does
    import asyncio

CLOSE_TIMEOUT_S = 3.0
"""How long closing a run's shared objects may take in all."""

Factory = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


class RunResources:
    """The shared objects of one run: ``await resources.get(key, factory)``, ``await resources.aclose()``."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._items: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    async def get(self, key: str, factory: Factory) -> Any:
        if self._closed:
            raise RuntimeError(f"the run has ended: its shared {key!r} is closed")
        import asyncio

        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # two steps asking at once get one object
            if key not in self._items:
                self._items[key] = await self._stack.enter_async_context(factory())
            return self._items[key]

    def __contains__(self, key: str) -> bool:
        return key in self._items

    async def aclose(self, log: Any = None) -> None:
        """Exit every shared object (last opened first); give up after CLOSE_TIMEOUT_S."""
        if self._closed:
            return
        self._closed = True
        if not self._items:
            return
        import asyncio

        names = list(self._items)
        self._items.clear()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._stack.aclose()
        except TimeoutError:
            if log is not None:
                log.warning("run.resources_abandoned", resources=names, timeout_s=CLOSE_TIMEOUT_S)
        except Exception as exc:  # closing must never change how the run ended
            if log is not None:
                log.warning("run.resources_close_failed", resources=names, error=f"{type(exc).__name__}: {exc}")
