"""Real SMTP servers on 127.0.0.1 for the send tests (aiosmtpd in a thread), as fixtures.

``smtp_server`` is a plain server (no TLS, no login); ``smtp_tls_server`` requires STARTTLS
with a self-signed certificate (trustme) and AUTH; ``start_smtp(**options)`` starts one with
other options. Each records what it really received in ``server.handler``:

- ``messages``: the accepted messages (``Received``: envelope sender, recipients, bytes, login);
- ``data_replies``: replies to give to the next DATA commands instead of accepting (``"451 ..."``);
- ``refuse``: recipient address -> reply, for RCPT refusals;
- ``connections``, ``data_attempts``: how often a client connected and sent DATA;
- ``quit_delay``: seconds the server waits before answering QUIT;
- ``reply_delay``: seconds it waits before answering each MAIL and RCPT (a slow server);
- ``on_data``: called (in the server's thread) when DATA arrives, before the reply.

``server.params()`` names the server in the policy (``host``, ``port``), which the engine
refuses unless ``[smtp] allow_policy_host`` is true: ``start_smtp`` sets
``ENGINE_SMTP_ALLOW_POLICY_HOST=true`` for in-process runs, and CLI runs take ``ALLOW_POLICY_HOST``
(or ``server.env()``, the server as ``ENGINE_SMTP_*`` variables) in their environment.

Import the fixtures into a test module with ``from tests.smtpserver import *``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

__all__ = [
    "Received",
    "SmtpServer",
    "smtp_server",
    "smtp_tls_server",
    "start_smtp",
    "tls_ca",
    "USERNAME",
    "PASSWORD",
    "PASSWORD_ENV",
    "ALLOW_POLICY_HOST",
]

USERNAME = "reports"
PASSWORD = "s3cr3t-Pa55w0rd!"
PASSWORD_ENV = "SMTP_TEST_PASSWORD"  # smtp_tls_server sets it; params() names it as a secret
ALLOW_POLICY_HOST = {"ENGINE_SMTP_ALLOW_POLICY_HOST": "true"}  # for CLI runs of policies using params()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None
    tls: bool

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Recorder:
    messages: list[Received] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    connections: int = 0
    data_attempts: int = 0
    quit_delay: float = 0.0
    reply_delay: float = 0.0
    on_data: Callable[[], None] | None = None

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_attempts += 1
        if self.on_data is not None:
            self.on_data()
        if self.data_replies:
            return self.data_replies.pop(0)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, login, tls)
        )
        return "250 2.0.0 OK: queued"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        if self.quit_delay:
            await asyncio.sleep(self.quit_delay)
        return "221 Bye"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    """Accept USERNAME/PASSWORD. A wrong user gets a reply that echoes the password it was given,
    as careless servers do, to prove the step masks it."""
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    login, password = auth_data.login.decode(), auth_data.password.decode()
    if login == USERNAME and password == PASSWORD:
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False, message=f"535 5.7.8 no user {login!r} with password {password}")


class _Controller(Controller):
    """aiosmtpd's threaded controller on a free port (port 0), counting connections."""

    def factory(self) -> SMTP:
        self.handler.connections += 1
        return SMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: Recorder
    security: str = "none"
    ca_file: str | None = None
    auth: bool = False

    def params(self, **extra: Any) -> dict[str, Any]:
        """send.email connection params for this server (the password as a secret)."""
        base: dict[str, Any] = {"host": self.host, "port": self.port, "security": self.security}
        if self.ca_file:
            base["tls_ca_file"] = self.ca_file
        if self.auth:
            base.update(username=USERNAME, password={"secret": PASSWORD_ENV})
        return {**base, **extra}

    def env(self) -> dict[str, str]:
        """The server as ``ENGINE_SMTP_*`` variables: the way a policy without host/port reaches it."""
        return {
            "ENGINE_SMTP_HOST": self.host,
            "ENGINE_SMTP_PORT": str(self.port),
            "ENGINE_SMTP_SECURITY": self.security,
        }


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, str]:
    """A throw-away CA and its PEM file (what send.email's tls_ca_file points at)."""
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, str(path)


@pytest.fixture
def start_smtp(tls_ca: tuple[trustme.CA, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SmtpServer]]:
    """Start servers for one test: ``start_smtp(tls="starttls" | "ssl" | None, auth=bool)``."""
    running: list[_Controller] = []
    for name, value in ALLOW_POLICY_HOST.items():
        monkeypatch.setenv(name, value)  # server.params() names the test server in the policy

    def start(tls: str | None = None, auth: bool = False) -> SmtpServer:
        handler = Recorder()
        ca, ca_file = tls_ca
        kwargs: dict[str, Any] = {}
        ssl_context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
            if tls == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                ssl_context = context
        if auth:
            kwargs.update(authenticator=authenticator, auth_required=True)
        controller = _Controller(handler, hostname="127.0.0.1", port=0, ssl_context=ssl_context, **kwargs)
        controller.start()
        running.append(controller)
        handler.connections = 0  # the controller's own start-up check
        return SmtpServer("127.0.0.1", controller.port, handler, tls or "none", ca_file if tls else None, auth)

    yield start
    for controller in running:
        controller.stop()


@pytest.fixture
def smtp_server(start_smtp: Callable[..., SmtpServer]) -> SmtpServer:
    return start_smtp()


@pytest.fixture
def smtp_tls_server(start_smtp: Callable[..., SmtpServer], monkeypatch: pytest.MonkeyPatch) -> SmtpServer:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return start_smtp(tls="starttls", auth=True)
