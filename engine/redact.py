"""Secret redaction: every secret value the process has read is replaced by ``***``.

Secrets are registered when a ``{"secret": ...}`` value is resolved. Log lines, error
messages, stored outputs and previews pass through :func:`redact` before they are written.

A secret is masked in every form in which the engine or a library may write it: as read, URL
encoded (``quote`` with and without ``/`` kept, ``quote_plus``, which is also form encoding; upper
and lower case hex), JSON-escaped (ASCII or not), and base64 (standard and URL-safe). So
``k3y/with+b64==`` sent as a query parameter is masked in ``?key=k3y%2Fwith%2Bb64%3D%3D`` too.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

from .limits import MAX_DEPTH

MASK = "***"
TOO_DEEP = f"*** (nested deeper than {MAX_DEPTH} levels: not shown)"
_MIN_LENGTH = 3  # shorter values would mask ordinary text everywhere
_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_forms: tuple[str, ...] = ()  # every encoding of every secret, longest first
_PERCENT = re.compile(r"%[0-9A-F]{2}")


def register(value: str) -> None:
    """Mask ``value`` from now on in logs, errors, stored outputs and previews.

    ``{"secret": ...}`` values are registered by the engine; a plugin that reads a secret some
    other way (a password from the engine configuration) registers it as ``engine.register_secret``.
    """
    global _secrets, _forms
    if len(value) >= _MIN_LENGTH and value not in _secrets:
        with _lock:
            _secrets = frozenset({*_secrets, value})
            forms = {form for secret in _secrets for form in encodings(secret)}
            # longest first, so a secret containing another is masked whole
            _forms = tuple(sorted(forms, key=lambda f: (-len(f), f)))


def encodings(value: str) -> set[str]:
    """The forms in which ``value`` may be written: as is, URL-encoded, JSON-escaped, base64."""
    raw = value.encode("utf-8")
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        base64.b64encode(raw).decode("ascii"),
        base64.urlsafe_b64encode(raw).decode("ascii"),
    }
    forms |= {_PERCENT.sub(lambda m: m.group().lower(), form) for form in forms}
    return {form for form in forms if len(form) >= _MIN_LENGTH}


def active() -> bool:
    """Whether any secret is registered: with none, there is nothing to redact."""
    return bool(_forms)


def is_secret(text: str) -> bool:
    """Whether ``text`` holds a registered secret in any of its forms (a query value, a header)."""
    return any(form in text for form in _forms)


def mask_query(url: str) -> str:
    """``url`` with every query value that holds a secret replaced by ``***`` as a whole:
    ``https://api.example.com/v1?key=k3y%2Fwith%2Bb64%3D%3D&n=1`` gives ``...?key=***&n=1``.
    Other parameters are kept exactly as written."""
    parts = urlsplit(url)
    if not _forms or not parts.query:
        return url
    fields = []
    for field in parts.query.split("&"):
        name, equals, value = field.partition("=")
        if equals and (is_secret(value) or is_secret(unquote_plus(value))):
            field = f"{name}={MASK}"
        fields.append(field)
    return urlunsplit(parts._replace(query="&".join(fields)))


def clear() -> None:
    """Forget every registered secret (tests use this)."""
    global _secrets, _forms
    with _lock:
        _secrets = frozenset()
        _forms = ()


def redact(text: str) -> str:
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def redact_value(value: Any) -> Any:
    """Redact every string inside a JSON-like value (dict keys too); other objects are returned as
    they are. Tuples become lists. Containers nested deeper than :data:`MAX_DEPTH` are replaced by
    :data:`TOO_DEEP` rather than walked (the walk is iterative: depth never exhausts the stack).
    """
    if not _forms:
        return value
    if not isinstance(value, dict | list | tuple):
        return redact(value) if isinstance(value, str) else value
    top = _empty(value)
    stack: list[tuple[Any, Any, int]] = [(value, top, 1)]
    while stack:
        source, target, depth = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, dict | list | tuple):
                if depth >= MAX_DEPTH:
                    copy: Any = TOO_DEEP
                else:
                    copy = _empty(item)
                    stack.append((item, copy, depth + 1))
            else:
                copy = redact(item) if isinstance(item, str) else item
            if isinstance(target, dict):
                target[redact(key) if isinstance(key, str) else key] = copy
            else:
                target.append(copy)
    return top


def _empty(container: Any) -> dict[Any, Any] | list[Any]:
    return {} if isinstance(container, dict) else []
