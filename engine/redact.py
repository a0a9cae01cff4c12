"""Secret redaction: every secret value the process has read is replaced by ``***``.

Secrets are registered when a ``{"secret": ...}`` value is resolved. Log lines, error
messages, stored outputs and previews pass through :func:`redact` before they are written.
"""

from __future__ import annotations

import threading
from typing import Any

MASK = "***"
_MIN_LENGTH = 3  # shorter values would mask ordinary text everywhere
_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register(value: str) -> None:
    """Mask ``value`` from now on in logs, errors, stored outputs and previews.

    ``{"secret": ...}`` values are registered by the engine; a plugin that reads a secret some
    other way (a password from the engine configuration) registers it as ``engine.register_secret``.
    """
    global _secrets
    if len(value) >= _MIN_LENGTH and value not in _secrets:
        with _lock:
            # longest first, so a secret containing another is masked whole
            _secrets = frozenset({*_secrets, value})


def clear() -> None:
    """Forget every registered secret (tests use this)."""
    global _secrets
    with _lock:
        _secrets = frozenset()


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any) -> Any:
    """Redact every string inside a JSON-like value; other objects are returned as they are."""
    if not _secrets:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value
