"""Ctrl-C and SIGTERM for commands that run steps: stop cleanly once, exit at once the second time.

:func:`run_async` runs a command's coroutine on its own event loop with SIGINT/SIGTERM handlers:

- the first signal calls ``on_signal`` (the command cancels its run); the coroutine then ends
  normally, having recorded the run CANCELLED;
- a second SIGINT exits at once with status 130: no traceback, child processes (a browser a
  step started) killed; the run is left RUNNING and the next command marks it interrupted;
- ``deadline_s`` after the first signal, if the coroutine has still not ended, the same hard exit.

When the coroutine is done, the loop is closed without waiting for threads: a step whose plain
``def run`` is still busy in its worker thread cannot be stopped from outside, so
:func:`exit_process` abandons it (``os._exit`` after flushing) instead of joining it forever.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

SIGINT_EXIT = 130
_CHILD_TERM_WAIT_S = 1.0
_TASK_WAIT_S = 1.0


class _State:
    signalled = False


_state = _State()


def collect_garbage() -> None:
    """Turn the garbage collector back on for a command's work (``main`` turned it off for the
    start-up); the objects start-up made (modules, classes, models) are frozen out of its scans."""
    import gc

    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def run_async(
    main: Callable[[], Coroutine[Any, Any, T]],
    on_signal: Callable[[signal.Signals], None],
    *,
    deadline_s: float | None = None,
    every_signal: bool = False,
) -> T:
    """Run ``main()`` to completion; see the module docstring for what signals do.

    With ``every_signal`` (``engine serve``, whose second signal cuts its grace period short),
    every signal goes to ``on_signal`` and only a third SIGINT exits at once."""
    import asyncio  # here, not at import: `engine --help` and `validate` never need an event loop

    collect_garbage()
    loop = asyncio.new_event_loop()
    _state.signalled = False
    seen: list[signal.Signals] = []

    def handle(sig: signal.Signals) -> None:
        seen.append(sig)
        if every_signal and len(seen) == 2:
            on_signal(sig)
            return
        if _state.signalled:
            if sig is signal.SIGINT:
                hard_exit(f"{sig.name} again: exiting now", SIGINT_EXIT)
            return
        _state.signalled = True
        if deadline_s is not None:
            timer = threading.Timer(deadline_s, hard_exit, (f"still stopping after {deadline_s:g} s: exiting now", 1))
            timer.daemon = True
            timer.start()
        on_signal(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle, sig)
    try:
        return loop.run_until_complete(main())
    finally:
        _close(loop)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop like ``asyncio.run`` does, but never wait long for tasks or threads."""
    import asyncio

    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=_TASK_WAIT_S))
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), _TASK_WAIT_S))
    except (Exception, asyncio.CancelledError):  # closing is best effort; the run is recorded already
        pass
    finally:
        executor = getattr(loop, "_default_executor", None)
        if executor is not None:  # no join: a busy worker thread is abandoned (exit_process)
            executor.shutdown(wait=False, cancel_futures=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        loop.close()


def busy_threads(wait_s: float = 0.2) -> list[threading.Thread]:
    """Non-daemon threads still running after ``wait_s`` (idle pool workers end by then)."""
    until = time.monotonic() + wait_s
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in others:
        thread.join(max(0.0, until - time.monotonic()))
    return [t for t in others if t.is_alive()]


def exit_process(code: int) -> NoReturn:
    """Exit with ``code``; if a worker thread is still busy (or we were interrupted), do not wait for it."""
    if busy_threads() or _state.signalled:
        kill_children()
        _flush()
        os._exit(code)
    sys.exit(code)


def hard_exit(message: str, code: int) -> NoReturn:
    """Leave now: say why, kill our child processes, flush, ``os._exit``."""
    try:
        if sys.stderr.isatty():
            sys.stderr.write("\x1b[?25h")  # the live table hides the cursor
        sys.stderr.write(f"\nengine: {message}\n")
    except Exception:  # pragma: no cover - stderr closed
        pass
    kill_children()
    _flush()
    os._exit(code)


def _flush() -> None:
    try:
        logs = sys.modules.get("engine.logs")  # not imported: nothing was logged
        if logs is not None:
            logs.close()
    except Exception:  # pragma: no cover
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # pragma: no cover
            pass


def descendants(pid: int | None = None) -> list[int]:
    """Every live descendant of ``pid`` (default: this process), read from ``/proc`` (Linux)."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:  # not Linux: nothing we can see
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_children() -> None:
    """SIGTERM every descendant process, then SIGKILL what is left after a second."""
    pids = descendants()
    if not pids:
        return
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    until = time.monotonic() + _CHILD_TERM_WAIT_S
    while time.monotonic() < until:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return
        time.sleep(0.05)
    for pid in descendants() + pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] != b"Z"
