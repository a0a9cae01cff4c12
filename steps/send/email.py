"""``send.email``: one message over SMTP, limited, tracked in ``deliveries`` and idempotent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine import ArtifactRef, CheckContext, Problem, Step, StepContext, StepError, is_expression

from . import mime, smtp
from .addresses import KINDS, Limits, LineBreak, bare, hint_for, one_line, parse
from .content import Attachment, Blob, blob, read_artifact
from .deliveries import Deliveries, busy_database, claim_async, content_hash, dedup_key, utc_now
from .plaintext import html_to_text


class SendEmailOutput(BaseModel):
    status: Literal["sent", "duplicate", "preview"] = Field(
        description="sent; duplicate (an earlier run sent the same message: nothing was sent); preview (a dry run)."
    )
    message_id: str | None = Field(description="The Message-ID header (of the earlier message for a duplicate).")
    dedup_key: str = Field(description="SHA-256 idempotency key (see docs/steps/send.md).")
    recipients: list[str] = Field(description="Envelope addresses: to, cc and bcc, each once.")
    refused: dict[str, str] = Field(default_factory=dict, description="Recipients the server refused, with its reply.")
    subject: str
    attachments: list[str] = Field(default_factory=list, description="Attachment file names.")
    sent_at: str | None = Field(None, description="When the server accepted the message (UTC, ISO 8601).")
    eml: str | None = Field(None, description="Dry run: the .eml file holding the complete message.")
    html_file: str | None = Field(None, description="Dry run: the HTML body as a file.")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class SendEmail(Step, type="send.email"):
    """Send one email over SMTP: HTML with a plain-text alternative, and attachments such as a PDF.

    Connection settings come from the engine configuration's ``[smtp]`` section and the params;
    ``max_recipients`` and ``allowed_domains`` are checked before any connection. Transient
    failures (connection, 4xx) are retried; 5xx replies fail at once with the server's text.
    Every delivery is recorded in the ``deliveries`` table, and a message already sent for the
    same policy, step, logical date, recipients and content is not sent again (status
    ``duplicate``) unless ``force`` is true. A dry run writes the message as an ``.eml`` file.
    """

    side_effects = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)
        from_: str | None = Field(None, alias="from", description="Sender address; default [smtp] from.")
        to: list[str] = Field(default_factory=list, description="Recipients (a list, or one address).")
        cc: list[str] = Field(default_factory=list, description="Copy recipients.")
        bcc: list[str] = Field(default_factory=list, description="Blind copy recipients (not in any header).")
        reply_to: list[str] = Field(default_factory=list, description="Reply-To addresses.")
        subject: str = Field(min_length=1, description="The subject line (often a template).")
        html: ArtifactRef | str | None = Field(None, description="The HTML body: an artifact ref or a string.")
        text: str | None = Field(None, description="The plain-text body; default generated from html.")
        attachments: list[Attachment] = Field(
            default_factory=list, description="Artifact refs, or {artifact, filename, media_type} objects."
        )
        host: str | None = Field(None, description="SMTP server; default [smtp] host, else localhost.")
        port: int | None = Field(None, ge=1, le=65535, description="Default [smtp] port, else 587/465/25 by security.")
        username: str | None = Field(None, description="Login user; no login without one.")
        password: str | None = Field(None, description='Login password: {"secret": "NAME"}.')
        security: smtp.Security | None = Field(
            None, description="starttls, ssl or none; unset: STARTTLS when the server offers it (required to log in)."
        )
        timeout_s: float | None = Field(None, gt=0, description="Per SMTP command; default 30.")
        tls_ca_file: str | None = Field(None, description="PEM file of a private CA the server's certificate is from.")
        tls_verify: bool | None = Field(None, description="false skips certificate checks (never on the internet).")
        max_recipients: int | None = Field(None, ge=1, description="Recipients per message; default 50.")
        allowed_domains: list[str] | None = Field(None, description="Only these domains ('*.example.com' too).")
        force: bool = Field(False, description="Send even if the same message was already sent.")
        on_refused: Literal["fail", "continue"] = Field(
            "fail", description="When the server refuses some recipients and accepts others."
        )
        attempts: int = Field(3, ge=1, le=20, description="Tries for transient errors, the first included.")
        backoff_s: float = Field(1.0, ge=0, description="Wait before the 2nd try; doubles each time.")

        _lists = field_validator("to", "cc", "bcc", "reply_to", mode="before")(_as_list)

    Output = SendEmailOutput

    @classmethod
    def check(cls, params: dict[str, Any], where: CheckContext) -> list[Problem]:
        lists = {k: _as_list(params.get(k, [])) for k in KINDS}
        if any(is_expression(v) or not isinstance(v, list) for v in lists.values()):
            lists = {k: v for k, v in lists.items() if isinstance(v, list) and not is_expression(v)}
        max_recipients = params.get("max_recipients")
        allowed = params.get("allowed_domains")
        limits = Limits.of(
            max_recipients if isinstance(max_recipients, int) else None,
            allowed if isinstance(allowed, list) and all(isinstance(d, str) for d in allowed) else None,
            where.config.section(smtp.SECTION),
        )
        problems = [Problem(v.pointer, v.message, v.hint) for v in limits.check(lists)]
        if isinstance(params.get("password"), str):
            problems.append(
                Problem(
                    "/password",
                    "a password written into the policy would be stored with every run",
                    'name it as a secret read from the environment: {"secret": "SMTP_PASSWORD"}',
                )
            )
        for key in ("from", "reply_to"):
            value = params.get(key)
            if is_expression(value):
                continue  # a ref or template: its value is checked when the step runs
            for i, item in enumerate(_as_list(value) or []):
                if isinstance(item, str):
                    try:
                        parse(item)
                    except ValueError as exc:
                        pointer = f"/{key}" if key == "from" else f"/{key}/{i}"
                        problems.append(Problem(pointer, str(exc), hint_for(exc)))
        problems += _line_breaks(params)
        try:
            host_allowed = smtp.policy_host_allowed(where.config)
        except StepError as exc:
            problems.append(Problem("", str(exc), "set allow_policy_host = true or false"))
            host_allowed = True  # reported just above
        if not host_allowed:
            problems += [
                Problem(f"/{name}", smtp.POLICY_HOST_MESSAGE, smtp.policy_host_hint(name))
                for name in smtp.POLICY_HOST_FIELDS
                if params.get(name) is not None
            ]
        return problems

    # -- run -------------------------------------------------------------------------------

    async def run(self, params: Params, ctx: StepContext) -> SendEmailOutput:
        letter, key = self._prepare(params, ctx)
        settings = self._settings(params, ctx)
        records = await asyncio.to_thread(Deliveries, ctx, "email")
        await claim_async(records, key)  # one run at a time per dedup key
        try:
            return await self._deliver(params, ctx, letter, key, settings, records)
        finally:
            try:
                await asyncio.to_thread(records.release, key)
            except sa.exc.OperationalError as exc:  # a claim left behind is taken over (see deliveries)
                ctx.log.warning("send.email.claim_kept", dedup_key=key, error=str(exc.orig))

    async def _deliver(
        self,
        params: Params,
        ctx: StepContext,
        letter: mime.Letter,
        key: str,
        settings: smtp.SmtpSettings,
        records: Deliveries,
    ) -> SendEmailOutput:
        envelope = _envelope(letter)
        # what an earlier process accepted but could not write down is written now
        if await asyncio.to_thread(records.resolve_journal):
            ctx.log.warning("send.email.journal_waiting", journal=str(records.journal.path))
        if not params.force:
            earlier = await asyncio.to_thread(records.find_sent, key)
            if earlier is not None:
                with busy_database("nothing was sent (the message is a duplicate)"):
                    await asyncio.to_thread(records.record, key, "duplicate", envelope, message_id=earlier.message_id)
                ctx.log.info("send.email.duplicate", dedup_key=key, sent_by_run=earlier.run_id)
                return self._output(letter, key, "duplicate", earlier.message_id, {}, earlier.sent_at)
        if abandoned := await asyncio.to_thread(records.abandon_sending, key):
            # no journal entry: that process died talking to the server, before any acceptance
            # reached it; the message may have arrived anyway (documented), it is sent again
            ctx.log.warning("send.email.unknown_outcome", dedup_key=key, rows=abandoned)
        # [quotas] emails_per_day: one per recipient the message is handed to the server for
        await asyncio.to_thread(ctx.use_quota, "emails_per_day", len(envelope))
        message = mime.build(letter)
        if head := await asyncio.to_thread(ctx.audit_head):  # [governance] audit_head_in_reports
            message["X-Audit-Head"] = f"{head[0]} {head[1]}"
        message_id = str(message["Message-ID"])
        data = message.as_bytes()
        sent_at = ""
        await asyncio.to_thread(records.open_sending, key, envelope, message_id)

        async def record_accepted(accepted: smtp.Accepted) -> None:
            nonlocal sent_at
            sent_at = utc_now()
            sent = [a for a in envelope if a not in accepted.refused]
            args = (key, message_id, sent_at, sent, accepted.refused)
            if not await asyncio.to_thread(records.accepted, *args):
                ctx.log.warning("send.email.recorded_later", message_id=message_id, journal=str(records.journal.path))

        sender = bare(letter.sender)
        for attempt in range(1, params.attempts + 1):
            try:
                accepted = await smtp.send(settings, sender, envelope, data, record_accepted)
                break
            except StepError as exc:
                if exc.retryable and attempt < params.attempts:
                    delay = params.backoff_s * 2 ** (attempt - 1)
                    ctx.log.warning("send.email.retry", attempt=attempt, error=str(exc), delay_s=delay)
                    await asyncio.sleep(delay)
                    continue
                final = _after_tries(exc, attempt)
                await asyncio.to_thread(records.close_failed, key, message_id, str(final))
                if final is exc:
                    raise
                raise final from exc
        ctx.log.info("send.email.sent", message_id=message_id, recipients=len(envelope), refused=len(accepted.refused))
        details = {"message_id": message_id, "recipients": len(envelope) - len(accepted.refused)}
        await asyncio.to_thread(ctx.audit, "delivery.sent", {**details, "refused": len(accepted.refused)})
        if accepted.refused and params.on_refused == "fail":
            refused = "; ".join(f"{a}: {reply}" for a, reply in accepted.refused.items())
            raise StepError(
                f"{settings.address} accepted the message for {len(envelope) - len(accepted.refused)} of "
                f"{len(envelope)} recipients and refused {refused} (the accepted ones are recorded as sent and "
                "will not get it again; set on_refused: continue to accept this)",
                retryable=False,
            )
        return self._output(letter, key, "sent", message_id, accepted.refused, sent_at)

    def preview(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        """The complete message as an .eml file (and the HTML body) in the preview folder."""
        letter, key = self._prepare(params, ctx)
        self._settings(params, ctx)  # a bad [smtp] section fails the dry run too
        message = mime.build(letter)
        out = self._output(letter, key, "preview", str(message["Message-ID"]), {}, None)
        if ctx.preview_dir is not None:
            ctx.preview_dir.mkdir(parents=True, exist_ok=True)
            eml = ctx.preview_dir / f"{ctx.step_id}.eml"
            eml.write_bytes(message.as_bytes())
            out.eml = str(eml)
            if letter.html is not None:
                html = ctx.preview_dir / f"{ctx.step_id}.html"
                html.write_text(letter.html, encoding="utf-8")
                out.html_file = str(html)
        result = out.model_dump()
        result["to"], result["cc"], result["bcc"] = list(letter.to), list(letter.cc), list(letter.bcc)
        result["from"] = letter.sender
        return result

    # -- the parts ---------------------------------------------------------------------------

    def _settings(self, params: Params, ctx: StepContext) -> smtp.SmtpSettings:
        if not smtp.policy_host_allowed(ctx.config):
            for name in smtp.POLICY_HOST_FIELDS:
                if getattr(params, name) is not None:
                    raise StepError(
                        f"{ctx.pointer}/params/{name}: {smtp.POLICY_HOST_MESSAGE} ({smtp.policy_host_hint(name)})",
                        retryable=False,
                    )
        overrides = {name: getattr(params, name) for name in smtp.CONNECTION_FIELDS}
        if params.tls_ca_file and ctx.policy_dir is not None:
            overrides["tls_ca_file"] = str(ctx.policy_dir / Path(params.tls_ca_file).expanduser())
        return smtp.settings_from(overrides, ctx.config)

    def _prepare(self, params: Params, ctx: StepContext) -> tuple[mime.Letter, str]:
        """The message to send and its dedup key; every limit is checked here, before any connection."""
        where = f"{ctx.pointer}/params"
        config = ctx.config.section(smtp.SECTION)
        sender = params.from_ or config.get("from")
        if not isinstance(sender, str) or not sender:
            raise StepError(
                f"{where}/from: no sender: set 'from' (or [smtp] from in the engine config)", retryable=False
            )
        lists = {"to": params.to, "cc": params.cc, "bcc": params.bcc}
        if not any(lists.values()):
            raise StepError(f"{where}: no recipients: set to, cc or bcc", retryable=False)
        problems = [
            f"{where}{v.pointer}: {v.message} ({v.hint})"
            for v in Limits.of(params.max_recipients, params.allowed_domains, config).check(lists)
        ]
        for pointer, address in [("/from", sender), *((f"/reply_to/{i}", a) for i, a in enumerate(params.reply_to))]:
            try:
                parse(address)
            except ValueError as exc:
                problems.append(f"{where}{pointer}: {exc}")
        try:
            one_line(params.subject)
        except LineBreak as exc:
            problems.insert(0, f"{where}/subject: {exc}")
        if problems:
            raise StepError("; ".join(problems), retryable=False)
        html = self._html(params.html, ctx, f"{where}/html")
        if html is None and params.text is None:
            raise StepError(f"{where}: the message has no body: set html or text", retryable=False)
        text = params.text if params.text is not None else html_to_text(html or "")
        files: list[Blob] = [blob(a, ctx, f"{where}/attachments/{i}") for i, a in enumerate(params.attachments)]
        letter = mime.Letter(
            sender=sender,
            to=params.to,
            cc=params.cc,
            bcc=params.bcc,
            reply_to=params.reply_to,
            subject=params.subject,
            text=text,
            html=html,
            attachments=files,
        )
        content = content_hash(
            {
                "subject": params.subject,
                "html": html,
                "text": text,
                "attachments": [[f.filename, f.sha256] for f in files],
            }
        )
        recipients = {k: [bare(a).lower() for a in v] for k, v in lists.items()}
        return letter, dedup_key(ctx, recipients, content)

    @staticmethod
    def _html(value: ArtifactRef | str | None, ctx: StepContext, where: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        data = read_artifact(value, ctx, where)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise StepError(f"{where}: the HTML artifact is not UTF-8 text", retryable=False) from None

    @staticmethod
    def _output(
        letter: mime.Letter, key: str, status: Any, message_id: str | None, refused: dict[str, str], sent_at: str | None
    ) -> SendEmailOutput:
        return SendEmailOutput(
            status=status,
            message_id=message_id,
            dedup_key=key,
            recipients=_envelope(letter),
            refused=refused,
            subject=letter.subject,
            attachments=[f.filename for f in letter.attachments],
            sent_at=sent_at,
        )


def _dicts(items: list[Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _line_breaks(params: dict[str, Any]) -> list[Problem]:
    """Literal subject and attachment names with CR or LF (addresses say so when parsed)."""
    found = [("/subject", params.get("subject"))]
    attachments = params.get("attachments")
    if isinstance(attachments, list):
        found += [(f"/attachments/{i}/filename", a.get("filename")) for i, a in _dicts(attachments)]
    problems = []
    for pointer, value in found:
        if isinstance(value, str):
            try:
                one_line(value)
            except LineBreak as exc:
                problems.append(Problem(pointer, str(exc), exc.hint))
    return problems


def _after_tries(exc: StepError, tries: int) -> StepError:
    """The last try's error, saying how many tries were made; the runner counts them as attempts."""
    if tries == 1:
        return exc
    return StepError(f"{exc} (after {tries} tries)", retryable=exc.retryable, tries=tries)


def _envelope(letter: mime.Letter) -> list[str]:
    """Each recipient's bare address once (to, cc, bcc order), whatever display names say."""
    seen: dict[str, str] = {}
    for address in letter.envelope:
        plain = bare(address)
        seen.setdefault(plain.lower(), plain)
    return list(seen.values())
