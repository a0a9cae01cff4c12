"""SMTP with aiosmtplib: connection settings, one exception boundary, one send.

Settings come from the engine configuration's ``[smtp]`` section (``ENGINE_SMTP_HOST``, ...)
with the step's params laid over them. Every aiosmtplib (and socket, TLS) exception passes
through :func:`smtp_errors`, which turns it into a :class:`StepError` carrying the server's
reply, marked retryable for what may go away (connect failures, timeouts, 4xx replies) and not
for what will not (5xx replies, TLS certificate errors), with the password masked.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine import EngineConfig, StepError, register_secret

Security = Literal["starttls", "ssl", "none"]
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
SECTION = "smtp"


class SmtpSettings(BaseModel):
    """The connection: every field may come from ``[smtp]`` in the engine configuration."""

    model_config = ConfigDict(extra="ignore")
    host: str = "localhost"
    port: int | None = Field(None, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    security: Security | None = None  # unset: STARTTLS when offered (required to log in), ssl on 465
    timeout_s: float = Field(30, gt=0)
    tls_ca_file: str | None = None
    tls_verify: bool = True

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security or "starttls"]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.effective_port}"

    def redact(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password and len(self.password) >= 3 else text


CONNECTION_FIELDS = tuple(SmtpSettings.model_fields)

# Where the engine connects is the machine's choice: a policy that names any host and port
# could make a shared engine probe the internal network. [smtp] allow_policy_host opts in.
POLICY_HOST_FIELDS = ("host", "port")
POLICY_HOST_MESSAGE = "a policy may not choose the SMTP server on this machine"


def policy_host_hint(name: str) -> str:
    return (
        f"set it in engine.toml [smtp] {name} (or ENGINE_SMTP_{name.upper()}) instead, "
        "or set [smtp] allow_policy_host = true to let policies choose"
    )


def policy_host_allowed(config: EngineConfig) -> bool:
    """``[smtp] allow_policy_host`` (default false); anything but a boolean is a config error."""
    value = config.section(SECTION).get("allow_policy_host", False)
    if not isinstance(value, bool):
        raise StepError(
            f"{config.where(SECTION)}: allow_policy_host: must be true or false, not {value!r}", retryable=False
        )
    return value


def settings_from(overrides: dict[str, Any], config: EngineConfig) -> SmtpSettings:
    """``[smtp]`` from the engine configuration, overridden by the params that are set."""
    section = {k: v for k, v in config.section(SECTION).items() if k in CONNECTION_FIELDS}
    password = section.get("password")
    if isinstance(password, str):
        register_secret(password)  # masked in logs, errors and outputs from now on
    try:
        base = SmtpSettings.model_validate(section)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise StepError(f"{config.where(SECTION)}: {problems}", retryable=False) from None
    return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Accepted:
    """The server took the message: for some recipients at least (``refused`` holds the rest)."""

    reply: str
    refused: dict[str, str]


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}"


@contextmanager
def smtp_errors(settings: SmtpSettings, stage: list[str]) -> Iterator[None]:
    """Translate what talking to the server can raise into a StepError (``stage[0]`` says when)."""
    where = settings.address
    try:
        yield
    except StepError:
        raise
    except aiosmtplib.SMTPRecipientsRefused as exc:
        replies = "; ".join(f"{r.recipient}: {_reply(r.code, r.message)}" for r in exc.recipients)
        transient = all(400 <= r.code < 500 for r in exc.recipients)
        raise StepError(settings.redact(f"{where} refused every recipient: {replies}"), retryable=transient) from exc
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise StepError(
            settings.redact(
                f"{where} refused the login as {settings.username!r}: {_reply(exc.code, exc.message)} "
                "(check username and password; Gmail needs an app password)"
            ),
            retryable=400 <= exc.code < 500,
        ) from exc
    except aiosmtplib.SMTPResponseException as exc:
        what = {
            aiosmtplib.SMTPSenderRefused: "refused the sender",
            aiosmtplib.SMTPDataError: "refused the message",
            aiosmtplib.SMTPHeloError: "refused the greeting",
        }.get(type(exc), f"answered an error during {stage[0]}")
        raise StepError(
            settings.redact(f"{where} {what}: {_reply(exc.code, exc.message)}"), retryable=400 <= exc.code < 500
        ) from exc
    except aiosmtplib.SMTPNotSupported as exc:
        raise StepError(
            settings.redact(f"{where}: {exc.message} (during {stage[0]}; check 'security' and the port)"),
            retryable=False,
        ) from exc
    except (ssl.SSLError, aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError) or isinstance(exc, ssl.SSLCertVerificationError):
            raise StepError(
                settings.redact(
                    f"{where}: the server's TLS certificate was not accepted: {cause} "
                    "(for a private CA set tls_ca_file to its PEM file)"
                ),
                retryable=False,
            ) from exc
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if isinstance(cause, ssl.SSLError) or "STARTTLS extension not supported" in text:
            # the port speaks another protocol than 'security' says: trying again cannot help
            raise StepError(
                settings.redact(
                    f"{where}: {stage[0]} failed: {text} (security {settings.security!r} does not match the "
                    "server: port 587 usually takes starttls, 465 ssl, 25 and local test servers none)"
                ),
                retryable=False,
            ) from exc
        raise StepError(settings.redact(f"{where}: {stage[0]} failed: {text}"), retryable=True) from exc


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.tls_ca_file)
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def send(
    settings: SmtpSettings,
    sender: str,
    recipients: Sequence[str],
    data: bytes,
    on_accepted: Callable[[Accepted], Awaitable[None]],
) -> Accepted:
    """Connect, log in, send ``data`` once; call ``on_accepted`` before saying goodbye.

    ``timeout_s`` bounds the whole conversation, from connecting to the server's reply to the
    message: a server that answers every command just in time cannot stretch it. ``on_accepted``
    runs right after the server accepted the message, before QUIT, so that a failure after
    acceptance can never make the message look unsent; the goodbye has its own ``timeout_s``.
    """
    mode = settings.security
    use_tls = mode == "ssl" or (mode is None and settings.effective_port == 465)
    # starttls: required; none: never; unset: when the server offers it (aiosmtplib's None)
    start_tls = True if mode == "starttls" else None if mode is None and not use_tls else False
    client = aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.effective_port,
        timeout=None,  # the deadline below bounds the whole conversation, not each command
        use_tls=use_tls,
        start_tls=start_tls,
        tls_context=_tls_context(settings) if mode != "none" else None,
    )
    stage = ["connect"]
    deadline = asyncio.timeout(settings.timeout_s)
    try:
        with smtp_errors(settings, stage), _over_time(settings, stage, deadline):
            async with deadline:
                refused, reply = await _converse(client, settings, sender, recipients, data, stage)
        accepted = Accepted(reply=reply, refused={r: _reply(resp.code, resp.message) for r, resp in refused.items()})
        await on_accepted(accepted)
        try:
            async with asyncio.timeout(settings.timeout_s):
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass  # the message is accepted; a lost goodbye changes nothing
        return accepted
    finally:
        client.close()


async def _converse(
    client: aiosmtplib.SMTP,
    settings: SmtpSettings,
    sender: str,
    recipients: Sequence[str],
    data: bytes,
    stage: list[str],
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    await client.connect()
    if settings.username and settings.security is None and client.get_transport_info("sslcontext") is None:
        raise StepError(
            f"{settings.address} does not offer STARTTLS: refusing to send the password unencrypted "
            "(set security: none to allow it on a network you trust, or use the server's TLS port)",
            retryable=False,
        )
    if settings.username:
        stage[0] = "login"
        await client.login(settings.username, settings.password or "")
    stage[0] = "send"
    return await client.sendmail(sender, list(recipients), data)


@contextmanager
def _over_time(settings: SmtpSettings, stage: list[str], deadline: asyncio.Timeout) -> Iterator[None]:
    """The whole-conversation deadline, said as such (retryable, like any timeout)."""
    try:
        yield
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        raise StepError(
            f"{settings.address}: no reply within timeout_s ({settings.timeout_s:g} s) for the whole conversation "
            f"(it was at {stage[0]}; a slow or stalled server)",
            retryable=True,
        ) from exc
