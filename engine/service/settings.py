"""Server settings an administrator looks at and tries: the mail server of ``send.email``.

The SMTP connection comes from the engine configuration (``[smtp]`` in ``engine.toml``, or the
``ENGINE_SMTP_*`` variables, docs/steps/send.md#connection-settings-smtp); nothing here changes
it. :func:`smtp_settings` shows it (never the password: only whether one is set, and where
from), :func:`send_test_email` sends one short message with the same SMTP client as
``send.email`` (:mod:`steps.send.smtp`), and answers the server's reply or the error. Both need
the ``admin`` role. A test email is audited (``smtp.test_email``) in the caller's workspace.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from ..errors import ConfigError, EngineError, StepError, UsageError
from .access import Caller, require
from .workspace import Workspace

SECTION = "smtp"
SHOWN = ("host", "port", "security", "username", "from", "timeout_s", "tls_ca_file", "tls_verify")
TEST_SUBJECT = "policy-engine: test email"


def _origin(ws: Workspace, key: str) -> str:
    """Where a setting comes from: ``environment`` (ENGINE_SMTP_*), the file, or ``default``."""
    section = ws.config.section(SECTION)
    in_file = ws.config.data.get(SECTION, {})
    if key not in section:
        return "default"
    if key in in_file and in_file[key] == section[key]:
        return str(ws.config.path) if ws.config.path else "configuration"
    return f"environment (ENGINE_SMTP_{key.upper()})"


def _connection(ws: Workspace) -> Any:
    """The ``[smtp]`` connection as ``send.email`` reads it (no policy overrides)."""
    from steps.send import smtp

    try:
        return smtp.settings_from({}, ws.config)
    except StepError as exc:
        raise ConfigError(str(exc)) from None


def smtp_settings(ws: Workspace, caller: Caller) -> dict[str, Any]:
    """The mail server as configured: host, port (the effective one), security, username, sender,
    where each comes from, and whether a password is set, never the password itself. A section
    that ``send.email`` would refuse is answered with ``problem`` (the step's own message)."""
    require(caller, "admin")
    section = ws.config.section(SECTION)
    out: dict[str, Any] = {"config_file": str(ws.config.path) if ws.config.path else None, "problem": None}
    try:
        settings = _connection(ws)
    except ConfigError as exc:
        settings = None
        out["problem"] = str(exc)
    values: dict[str, Any] = {
        "host": settings.host if settings else section.get("host"),
        "port": settings.effective_port if settings else section.get("port"),
        "security": (settings.security if settings else section.get("security")) or None,
        "username": settings.username if settings else section.get("username"),
        "from": section.get("from"),
        "timeout_s": settings.timeout_s if settings else section.get("timeout_s"),
        "tls_ca_file": settings.tls_ca_file if settings else section.get("tls_ca_file"),
        "tls_verify": settings.tls_verify if settings else section.get("tls_verify"),
    }
    out["settings"] = [{"name": k, "value": values[k], "origin": _origin(ws, k)} for k in SHOWN]
    out["password_set"] = bool(section.get("password"))
    out["password_origin"] = _origin(ws, "password") if out["password_set"] else None
    out["address"] = settings.address if settings else None
    return out


def _sender(ws: Workspace, to: str) -> str:
    """``[smtp] from``; else the login when it is an address; else the recipient itself."""
    section = ws.config.section(SECTION)
    for candidate in (section.get("from"), section.get("username")):
        if isinstance(candidate, str) and "@" in candidate:
            return candidate
    return to


async def send_test_email_async(ws: Workspace, caller: Caller, to: str) -> dict[str, Any]:
    """Send one short plain-text message to ``to`` through the configured server.

    Answers ``{"ok": true, "reply": ...}`` with the server's reply to the message, or ``{"ok":
    false, "error": ...}`` with the error as ``send.email`` would report it (the password
    masked); both with ``to``, ``from``, ``server`` and ``message_id``. A recipient that is not one
    address, or that ``[smtp] allowed_domains`` does not allow, is a UsageError; a section that
    cannot be read a ConfigError: nothing is sent then.
    """
    from steps.send import addresses, mime, smtp

    require(caller, "admin")
    to = (to or "").strip()
    try:
        recipient = addresses.bare(to)
    except ValueError as exc:
        raise UsageError(f"to: {exc}") from None
    section = ws.config.section(SECTION)
    violations = addresses.Limits.of(None, None, section).check({"to": [recipient]})
    if violations:
        raise UsageError("; ".join(f"to: {v.message} ({v.hint})" for v in violations))
    settings = _connection(ws)
    sender = _sender(ws, recipient)
    try:
        addresses.parse(sender)
    except ValueError as exc:
        raise ConfigError(f"{ws.config.where(SECTION)}: from: {exc}") from None
    now = dt.datetime.now(dt.UTC)
    letter = mime.Letter(
        sender=sender,
        to=[recipient],
        cc=[],
        bcc=[],
        reply_to=[],
        subject=TEST_SUBJECT,
        text=(
            f"This is a test email from policy-engine, sent by {caller.actor} (workspace {caller.workspace}) "
            f"at {now.isoformat(timespec='seconds')} through {settings.address}.\n\n"
            "If you can read it, send.email can reach this mail server with the engine's [smtp] settings.\n"
        ),
        html=None,
    )
    message = mime.build(letter, date=now)
    message_id = str(message["Message-ID"])
    result: dict[str, Any] = {
        "to": recipient,
        "from": sender,
        "server": settings.address,
        "message_id": message_id,
    }

    async def accepted(_: Any) -> None:
        return None

    try:
        answer = await smtp.send(settings, addresses.bare(sender), [recipient], message.as_bytes(), accepted)
    except StepError as exc:
        result.update(ok=False, error=str(exc), retryable=exc.retryable)
    else:
        result.update(ok=True, reply=answer.reply)
    _audit(ws, caller, result)
    return result


def send_test_email(ws: Workspace, caller: Caller, to: str) -> dict[str, Any]:
    """:func:`send_test_email_async` for callers without an event loop (a thread of the server)."""
    return asyncio.run(send_test_email_async(ws, caller, to))


def _audit(ws: Workspace, caller: Caller, result: dict[str, Any]) -> None:
    from ..governance import audit

    details = {k: result.get(k) for k in ("to", "server", "ok", "message_id")}
    if not result.get("ok"):
        details["error"] = result.get("error")
    try:
        audit.record(ws.store.engine, caller.actor, "smtp.test_email", result["server"], details)
    except EngineError:  # never hides what the server answered
        pass
