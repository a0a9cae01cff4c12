"""Structured logging with structlog: JSON lines to ``<state dir>/logs/engine.log`` and stderr.

On a terminal stderr gets a readable console format; off a terminal it gets JSON lines too.
Every event passes through the redaction processor, so secrets never reach a log.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import structlog

from . import redact

_LOGGER_NAME = "engine"


def _redact_event(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: redact.redact_value(v) for k, v in event.items()}


_shared = [
    structlog.stdlib.filter_by_level,  # cheap early exit when nobody listens at this level
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _redact_event,
]

structlog.configure(
    processors=[*_shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)
logging.getLogger(_LOGGER_NAME).addHandler(logging.NullHandler())


def get_logger() -> Any:
    return structlog.get_logger(_LOGGER_NAME)


def configure(state_dir: Path | None, *, console: bool | None = None, console_level: int = logging.INFO) -> None:
    """Send the engine's logs to ``<state_dir>/logs/engine.log`` (JSON) and to stderr.

    ``console`` True uses the readable console format, False JSON lines; None decides by
    whether stderr is a terminal.
    """
    logger = logging.getLogger(_LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    json_formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
    )
    if state_dir is not None:
        (state_dir / "logs").mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(state_dir / "logs" / "engine.log", encoding="utf-8")
        file_handler.setFormatter(json_formatter)
        file_handler.setLevel(logging.INFO)
        logger.addHandler(file_handler)
    if console is None:
        console = sys.stderr.isatty()
    stream = logging.StreamHandler(sys.stderr)
    stream.setLevel(console_level)
    if console:
        stream.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.dev.ConsoleRenderer(colors=True),
                ],
            )
        )
    else:
        stream.setFormatter(json_formatter)
    logger.addHandler(stream)


def close() -> None:
    logger = logging.getLogger(_LOGGER_NAME)
    for handler in list(logger.handlers):
        if not isinstance(handler, logging.NullHandler):
            logger.removeHandler(handler)
            handler.close()
