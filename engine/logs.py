"""Structured logging with structlog: JSON lines to ``<state dir>/logs/engine.log`` and stderr.

Every event goes through one short processor chain (context variables, level, UTC timestamp,
exception text, redaction of secrets) and is rendered to JSON once. The writer puts that line in
the log file and, when stderr is not a terminal, the same line on stderr. On a terminal stderr
gets structlog's readable, coloured console format instead: the only case where an event is
rendered twice. There is no stdlib ``logging`` in the path: no records, no formatters, no handlers.

Each line is one unbuffered ``write`` to the file, so a process that crashes, or leaves through
``os._exit``, has lost nothing it had logged. Levels are filtered by structlog's filtering bound
logger, where a method below the level is a bare ``return None``: until :func:`configure` is
called (the engine used as a library) nobody listens, and only critical events get past it.

structlog is imported on first use, not with this module, so commands that never log
(``engine --help``, ``engine validate``) do not pay for it.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from . import redact
from .clock import utc_stamp

INFO = 20  # logging.INFO, without importing logging
_FILE_LEVEL = INFO
_SILENT = 50  # logging.CRITICAL: the filtering logger's highest level, used while nobody listens
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50, "fatal": 50}
_LOGGER_NAME = "engine"


def _fallback(value: Any) -> Any:
    """What JSON cannot hold: the object's ``__structlog__()`` if it has one, else its repr (as
    structlog's JSONRenderer does)."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


# one encoder for every event: json.dumps(..., default=...) would build a new one per call
_encode_json: Callable[[Any], str] = json.JSONEncoder(default=_fallback).encode


class _Writer:
    """structlog's "logger": it writes the lines the processor chain rendered.

    The chain ends in :func:`_json_line` (JSON for both destinations) or :func:`_json_and_console`
    (JSON for the file, the console format for stderr); structlog then calls the method named after
    the level with the result, e.g. ``info(line, console_line)``.
    """

    def __init__(self) -> None:
        self.file: IO[bytes] | None = None  # unbuffered: one write per line
        self.stream: IO[str] | None = None
        self.stream_level = _SILENT + 1
        self.console: Callable[..., str] | None = None  # structlog's ConsoleRenderer, on a terminal
        self.lock = threading.Lock()  # steps with a plain ``def run`` log from worker threads

    def write(self, level: int, line: str, console_line: str | None = None) -> None:
        # a full disk or a closed pipe (engine run | head) is never a reason to stop a run: the
        # line is dropped there, as the stdlib's handlers did
        with self.lock:
            if self.file is not None and level >= _FILE_LEVEL:
                try:
                    self.file.write(line.encode("utf-8"))
                except (OSError, ValueError):
                    pass
            if self.stream is not None and level >= self.stream_level:
                try:
                    self.stream.write(line if console_line is None else console_line)
                    self.stream.flush()
                except (OSError, ValueError):
                    pass

    def wants_console(self, method: str) -> bool:
        return self.stream is not None and _LEVELS.get(method, INFO) >= self.stream_level

    def debug(self, line: str, console_line: str | None = None) -> None:
        self.write(10, line, console_line)

    def info(self, line: str, console_line: str | None = None) -> None:
        self.write(20, line, console_line)

    def warning(self, line: str, console_line: str | None = None) -> None:
        self.write(30, line, console_line)

    def error(self, line: str, console_line: str | None = None) -> None:
        self.write(40, line, console_line)

    def critical(self, line: str, console_line: str | None = None) -> None:
        self.write(50, line, console_line)

    msg, warn, fatal = info, warning, critical


_writer = _Writer()


def _add_timestamp(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    event["timestamp"] = utc_stamp()  # as structlog's TimeStamper(fmt="iso", utc=True) writes it
    return event


def _redact_event(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    if not redact.active():
        return event
    return {k: redact.redact_value(v) for k, v in event.items()}


def _json_line(_logger: Any, _method: str, event: dict[str, Any]) -> str:
    return _encode_json(event) + "\n"


def _json_and_console(
    _logger: Any, method: str, event: dict[str, Any]
) -> tuple[tuple[str, str | None], dict[str, Any]]:
    line = _encode_json(event) + "\n"
    if _writer.console is None or not _writer.wants_console(method):
        return (line, None), {}
    return (line, _writer.console(_logger, method, event) + "\n"), {}


_structlog: Any = None


def _setup() -> Any:
    """Import and configure structlog, once."""
    global _structlog
    if _structlog is None:
        _structlog = _import_structlog()
        _configure_structlog(_SILENT, console=False)
    return _structlog


_RICH_EXTRAS = ("rich", "rich.traceback", "rich.pretty")  # optional in structlog.dev and .tracebacks


def _import_structlog() -> Any:
    """``import structlog`` without its rich tracebacks.

    When rich is installed, ``structlog.dev`` imports ``rich.console`` and ``rich.traceback`` (with
    pygments) to draw exceptions on a terminal, and ``structlog.tracebacks`` imports ``rich.pretty``
    (with attrs) to show local variables: about 80 ms of every command's start-up, for features our
    logs do not use (exceptions go to engine.log as text, through ``format_exc_info``). structlog
    guards these imports (``except ImportError``: plain tracebacks), so the modules not imported
    yet are hidden while structlog is imported, then made importable again for anyone else.
    """
    hidden = [name for name in _RICH_EXTRAS if name not in sys.modules]
    if "structlog" in sys.modules or "rich.traceback" not in hidden:
        import structlog

        return structlog
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import structlog
    finally:
        for name in hidden:
            del sys.modules[name]
    return structlog


def _configure_structlog(level: int, console: bool) -> None:
    structlog = _structlog
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_timestamp,
            structlog.processors.format_exc_info,
            _redact_event,
            _json_and_console if console else _json_line,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_args: _writer,
        # not cached: a logger made before configure() must see the levels configure() sets
        cache_logger_on_first_use=False,
    )


def get_logger() -> Any:
    """A structlog logger for the engine's events: ``get_logger().bind(run_id=...).info("run.started")``."""
    return _setup().get_logger(_LOGGER_NAME)


def configure(state_dir: Path | None, *, console: bool | None = None, console_level: int = INFO) -> None:
    """Send the engine's logs to ``<state_dir>/logs/engine.log`` (JSON, info and above) and to
    stderr (``console_level`` and above).

    ``console`` True uses the readable console format on stderr, False JSON lines; None decides
    by whether stderr is a terminal.
    """
    structlog = _setup()
    close()
    if state_dir is not None:
        (state_dir / "logs").mkdir(parents=True, exist_ok=True)
        _writer.file = open(state_dir / "logs" / "engine.log", "ab", buffering=0)  # closed by close()
    if console is None:
        console = sys.stderr.isatty()
    _writer.stream = sys.stderr
    _writer.stream_level = console_level
    _writer.console = structlog.dev.ConsoleRenderer(colors=True) if console else None
    lowest = min(console_level, _FILE_LEVEL) if state_dir is not None else console_level
    # the filtering logger knows the standard levels only; the writer filters exactly
    _configure_structlog(max([0, *(v for v in _LEVELS.values() if v <= lowest)]), console)


def close() -> None:
    """Stop writing: close the log file and leave stderr alone (nobody listens until the next
    :func:`configure`)."""
    # hard_exit calls this from a timer thread: never wait long for a writer stuck on a full pipe
    locked = _writer.lock.acquire(timeout=1.0)
    try:
        file, _writer.file = _writer.file, None
        _writer.stream, _writer.console = None, None
        _writer.stream_level = _SILENT + 1
    finally:
        if locked:
            _writer.lock.release()
    if file is not None:
        file.close()
    if _structlog is not None:
        _configure_structlog(_SILENT, console=False)
