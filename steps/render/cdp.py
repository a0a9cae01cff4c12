"""A small Chrome DevTools Protocol client: one headless Chromium, spoken to over its DevTools pipe.

Chromium is started with ``--remote-debugging-pipe``: it reads commands from its file descriptor 3
and writes answers and events to 4, each a JSON object ended by a NUL byte. No port is opened, so
nothing else on the machine can drive the browser. It runs with a throwaway profile folder,
``--no-sandbox`` only when running as root (Chromium's sandbox cannot start as root), and a proxy
that does not exist, so a request that got past the page's own checks still reaches no network.

:class:`Chromium` is an async context manager: leaving it closes the browser with
``Browser.close`` and, when it has not exited within :data:`CLOSE_TIMEOUT_S` (frozen, or the
close was cancelled), kills its whole process group (the browser leads its own group, with its
zygote, renderer and GPU helpers). Why a client of our own rather than a library: it is under
300 lines, it chooses every Chromium flag (choreographer, Kaleido's client, always adds
``--disable-web-security``), and it starts faster than Playwright's Node driver (see
docs/steps/render.md and the benchmark figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

LAUNCH_TIMEOUT_S = 30.0
"""How long the browser may take to start and answer its first command."""
CLOSE_TIMEOUT_S = 2.0
"""How long the browser may take to exit after ``Browser.close`` before its process group is killed."""

FLAGS = (
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    # the tabs of one browser share one renderer process, so a page after the first finds
    # plotly.js already compiled (0.4 s instead of 1 s on a small machine)
    "--process-per-site",
    "--password-store=basic",
    "--use-mock-keychain",
    # every request the page's checks let through still goes nowhere: a proxy nobody listens on,
    # for loopback addresses too, and no name ever resolves
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
"""Chromium's flags, besides the profile folder, the pipe and ``--no-sandbox`` as root."""

launches = 0
"""How many browsers this process has started (tests read it: one per run, however many renders)."""

# the shell puts our two pipe ends, handed over as stdin and stdout, where Chromium reads and writes them
_EXEC_WITH_PIPES = 'exec "$@" 3<&0 4>&1 </dev/null >/dev/null'


class BrowserError(Exception):
    """The browser answered a command with an error, or it is gone."""


class Chromium:
    """One headless Chromium: ``async with Chromium(path) as browser: await browser.send(...)``.

    ``send(method, params, session)`` returns the command's result; ``on(session, handler)``
    calls ``handler(method, params)`` for each event of a session (``""`` is the browser's own),
    and a last ``Inspector.detached`` when the browser goes.
    ``pid`` is the browser's process id, which is also its process group's.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._profile: str | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._receiver: asyncio.ReadTransport | None = None
        self._reading: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        self._gone: str | None = None

    async def __aenter__(self) -> Chromium:
        try:
            await self._launch()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def profile(self) -> Path:
        """The browser's throwaway folder (its profile, and pages written for it), removed on close."""
        assert self._profile is not None
        return Path(self._profile)

    async def _launch(self) -> None:
        loop = asyncio.get_running_loop()
        self._profile = await asyncio.to_thread(_new_profile)
        to_browser, from_us = os.pipe()
        to_us, from_browser = os.pipe()
        args = [self.path, *FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-pipe"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")
        try:
            self._process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                _EXEC_WITH_PIPES,
                "sh",
                *args,
                "about:blank",
                stdin=to_browser,
                stdout=from_browser,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # its own process group, killed as a whole
                # Debian's Chromium keeps its crash reports in ~/.config/chromium whatever the
                # profile folder: they go to the throwaway folder too
                env={**os.environ, "XDG_CONFIG_HOME": os.path.join(self._profile, "config")},
            )
        except BaseException:
            for fd in (from_us, to_us):
                os.close(fd)
            raise
        finally:
            os.close(to_browser)
            os.close(from_browser)
        self.pid = self._process.pid
        global launches
        launches += 1
        reader = asyncio.StreamReader(limit=1 << 31)
        self._receiver, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(to_us, "rb", 0)
        )
        self._writer, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(from_us, "wb", 0))
        self._reading = asyncio.create_task(self._read(reader))
        try:
            await asyncio.wait_for(self.send("Browser.getVersion"), LAUNCH_TIMEOUT_S)  # answered once it is up
        except TimeoutError:
            raise BrowserError(f"it did not answer within {LAUNCH_TIMEOUT_S:.0f} s") from None

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = json.loads((await reader.readuntil(b"\0"))[:-1])
                if "id" in message:
                    future = self._pending.pop(message["id"], None)
                    if future is None or future.done():
                        continue
                    if "error" in message:
                        error = message["error"]
                        future.set_exception(BrowserError(f"{error.get('message')} ({error.get('code')})"))
                    else:
                        future.set_result(message.get("result", {}))
                else:
                    handler = self._handlers.get(message.get("sessionId", ""))
                    if handler is not None:
                        handler(message["method"], message.get("params", {}))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            self._gone = f"the browser closed its DevTools pipe ({type(exc).__name__})"
        finally:
            self._gone = self._gone or "the browser is closed"
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrowserError(self._gone))
            self._pending.clear()
            for handler in list(self._handlers.values()):  # every session is detached now
                handler("Inspector.detached", {"reason": self._gone})

    def post(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> int:
        """Send a command without waiting for its answer; returns its id."""
        if self._gone is not None or self._writer is None or self._writer.is_closing():
            raise BrowserError(self._gone or "the browser is not running")
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._writer.write(json.dumps(message).encode() + b"\0")
        return ident

    async def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> dict[str, Any]:
        """Send a command and return its result; a BrowserError when the browser refuses it or is gone."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self.post(method, params, session)] = future
        return await future

    def on(self, session: str, handler: Callable[[str, dict[str, Any]], None] | None) -> None:
        """Call ``handler(method, params)`` for each event of ``session``; None stops."""
        if handler is None:
            self._handlers.pop(session, None)
        else:
            self._handlers[session] = handler

    async def close(self) -> None:
        """Ask the browser to close; kill its process group when it has not exited within CLOSE_TIMEOUT_S.

        Bounded also when cancelled meanwhile: the group is killed before the cancellation goes on.
        """
        process, self._process = self._process, None
        try:
            if process is not None and process.returncode is None:
                with contextlib.suppress(BrowserError):
                    self.post("Browser.close")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(process.wait()), CLOSE_TIMEOUT_S)
        finally:
            await asyncio.shield(self._release(process))

    async def _release(self, process: asyncio.subprocess.Process | None) -> None:
        """Kill what is left of the browser, close the pipes, remove the profile folder."""
        if process is not None:
            frozen = process.returncode is None
            _kill_group(process.pid)  # a frozen browser, or helpers that outlived it
            if frozen and self._profile is not None:
                # its crash handlers leave the group; they name the profile folder
                await asyncio.to_thread(_kill_named, self._profile)
            with contextlib.suppress(TimeoutError):  # killed: it is reaped at once
                await asyncio.wait_for(process.wait(), 1.0)
        for transport in (self._writer, self._receiver):
            if transport is not None:
                transport.close()
        if self._reading is not None:
            self._reading.cancel()
        profile, self._profile = self._profile, None
        if profile is not None:
            # in a thread: a profile holds thousands of small files
            await asyncio.to_thread(shutil.rmtree, profile, True)


PROFILE_PREFIX = "engine-chromium-"


def _new_profile() -> str:
    """A new profile folder, named for this process; the folders of processes that ended without
    removing theirs (killed, or a second Ctrl-C) are removed first."""
    prefix = f"{PROFILE_PREFIX}{os.getpid()}-"
    for old in Path(tempfile.gettempdir()).glob(f"{PROFILE_PREFIX}*-*"):
        pid = old.name[len(PROFILE_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=prefix)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _kill_named(profile: str) -> None:
    """SIGKILL the processes whose command line names ``profile``: a killed browser's crash handlers,
    which Chromium starts in sessions of their own (they would end by themselves a moment later)."""
    marker = profile.encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    named = marker in fh.read()
            except OSError:  # gone meanwhile
                continue
            if named:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry), signal.SIGKILL)


def _kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads. Linux never gives a pid to a new process while a
    group of that number has members, so an empty group is the only other case (ESRCH)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
