"""send.email against real SMTP servers on 127.0.0.1: the message as received, retries, limits,
idempotency across runs and resumes, dry-run previews, and a password that is never written down."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import socket
import sqlite3
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

import tests.sendkit  # noqa: F401  (test.report: a real PDF and an HTML page as artifacts)
from engine import EngineConfig, PolicyError
from engine.api import run_policy
from tests.conftest import policy
from tests.sendkit import REPORT_HTML, pdf_bytes
from tests.smtpserver import *  # noqa: F403  (the SMTP server fixtures)
from tests.smtpserver import ALLOW_POLICY_HOST, PASSWORD, PASSWORD_ENV, USERNAME, SmtpServer

TEXT = (
    "Daily sales\n\nRevenue was 1,234.50 EUR & rising.\n\n- emea: 800\n- apac: 434.50\n\n"
    "Details: the dashboard (https://reports.example.com/daily)\n"
)


def mail_policy(server, pid="daily", after=(), **params):
    """test.report, then send.email of its HTML with the PDF attached, then any ``after`` steps."""
    send = {
        "from": "Reports <reports@example.com>",
        "to": ["ann@example.com"],
        "subject": {"template": "Sales for {{ run.policy_id }}"},
        "html": {"ref": "ctx.report.html"},
        "attachments": [{"ref": "ctx.report.pdf"}],
        "backoff_s": 0,
        **server.params(),
        **params,
    }
    return policy(
        {"id": "report", "type": "test.report"},
        {"id": "mail", "type": "send.email", "params": send},
        *after,
        id=pid,
    )


def deliveries(store):
    with sqlite3.connect(store.state_dir / "engine.db") as con:
        con.row_factory = sqlite3.Row
        if not con.execute("select 1 from sqlite_master where name = 'deliveries'").fetchall():
            return []  # created by the first delivery attempt
        return [dict(r) for r in con.execute("select * from deliveries order by id")]


def output(store, result, sid="mail"):
    (row,) = [r for r in store.get_steps(result.run_id) if r["step_id"] == sid]
    return json.loads(row["output_json"])


def unix(text):
    """Text parts travel with CRLF line ends (quoted-printable)."""
    return text.replace("\r\n", "\n")


def error(result, sid="mail"):
    (step,) = [s for s in result.steps if s.id == sid]
    return step.error


def attempts(store, result, sid="mail"):
    """The step's recorded attempts (``step_runs.attempts``, what ``engine show`` prints)."""
    (row,) = [r for r in store.get_steps(result.run_id) if r["step_id"] == sid]
    return row["attempts"]


def attempt_rows(store, result, sid="mail"):
    with sqlite3.connect(store.state_dir / "engine.db") as con:
        query = "select run_attempt, attempt, status, error from step_attempts where run_id = ? and step_id = ?"
        return con.execute(f"{query} order by id", (result.run_id, sid)).fetchall()


def closed_port():
    """A port on 127.0.0.1 that nothing listens on: picked by the system, then closed again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused(port):
    """What connecting to a closed port on 127.0.0.1 fails with."""
    return (
        f"127.0.0.1:{port}: connect failed: Error connecting to 127.0.0.1 on port {port}: "
        f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
    )


# -- the message as the server received it ----------------------------------------------------


def test_starttls_with_auth_delivers_headers_both_bodies_and_the_pdf(run, store, smtp_tls_server):
    result = run(
        mail_policy(
            smtp_tls_server,
            to=["Ann <ann@example.com>", "bob@example.com"],
            cc=["carol@example.com"],
            bcc=["audit@example.com"],
            reply_to="sales@example.com",
            attachments=[{"ref": "ctx.report.pdf"}, {"artifact": {"ref": "ctx.report.html"}, "filename": "page.html"}],
        )
    )
    assert result.status == "SUCCESS", error(result)
    (got,) = smtp_tls_server.handler.messages
    assert (got.login, got.tls) == (USERNAME, True)
    assert got.mail_from == "reports@example.com"
    assert got.rcpt_tos == ["ann@example.com", "bob@example.com", "carol@example.com", "audit@example.com"]
    msg = got.message
    assert msg["From"] == "Reports <reports@example.com>"
    assert msg["To"] == "Ann <ann@example.com>, bob@example.com"
    assert msg["Cc"] == "carol@example.com"
    assert msg["Reply-To"] == "sales@example.com"
    assert msg["Bcc"] is None and b"audit@example.com" not in got.data
    assert msg["Subject"] == "Sales for daily"
    assert parsedate_to_datetime(msg["Date"]).tzinfo is not None
    out = output(store, result)
    assert msg["Message-ID"] == out["message_id"] and out["message_id"].endswith("@example.com>")

    assert msg.get_content_type() == "multipart/mixed"
    body, pdf, page = msg.get_payload()
    assert body.get_content_type() == "multipart/alternative"
    plain, html = body.get_payload()
    assert (plain.get_content_type(), unix(plain.get_content())) == ("text/plain", TEXT)
    assert (html.get_content_type(), unix(html.get_content())) == ("text/html", REPORT_HTML + "\n")
    assert (pdf.get_content_type(), pdf.get_filename(), pdf.get_content_disposition()) == (
        "application/pdf",
        "report.pdf",
        "attachment",
    )
    assert pdf.get_payload(decode=True) == pdf_bytes("Daily sales report")
    assert "Daily sales report" in PdfReader(io.BytesIO(pdf.get_payload(decode=True))).pages[0].extract_text()
    assert (page.get_filename(), page.get_payload(decode=True)) == ("page.html", REPORT_HTML.encode())

    assert {k: out[k] for k in ("status", "recipients", "refused", "subject", "attachments")} == {
        "status": "sent",
        "recipients": ["ann@example.com", "bob@example.com", "carol@example.com", "audit@example.com"],
        "refused": {},
        "subject": "Sales for daily",
        "attachments": ["report.pdf", "page.html"],
    }
    rows = deliveries(store)
    assert [(r["run_id"], r["step_id"], r["channel"], r["recipient"], r["status"]) for r in rows] == [
        (result.run_id, "mail", "email", a, "sent") for a in out["recipients"]
    ]
    assert {(r["dedup_key"], r["message_id"], r["sent_at"], r["error"]) for r in rows} == {
        (out["dedup_key"], out["message_id"], out["sent_at"], None)
    }


def test_implicit_tls_and_the_smtp_config_section(run, start_smtp, monkeypatch):
    server = start_smtp(tls="ssl")
    monkeypatch.setenv("ENGINE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ENGINE_SMTP_PORT", str(server.port))
    monkeypatch.setenv("ENGINE_SMTP_SECURITY", "ssl")
    monkeypatch.setenv("ENGINE_SMTP_TLS_CA_FILE", server.ca_file)
    monkeypatch.setenv("ENGINE_SMTP_FROM", "robot@example.com")
    doc = mail_policy(server)
    for key in ("host", "port", "security", "from", "tls_ca_file"):
        del doc["steps"][1]["params"][key]
    assert run(doc).status == "SUCCESS"
    (got,) = server.handler.messages
    assert (got.mail_from, got.tls) == ("robot@example.com", True)

    monkeypatch.setenv("ENGINE_SMTP_PORT", "1")  # the policy's port wins over the config
    doc["steps"][1]["params"]["port"] = server.port
    assert run(doc).status == "SUCCESS" and len(server.handler.messages) == 2


def test_without_a_security_setting_starttls_is_used_when_offered(run, smtp_server, smtp_tls_server):
    for server in (smtp_server, smtp_tls_server):
        doc = mail_policy(server)
        del doc["steps"][1]["params"]["security"]
        assert run(doc).status == "SUCCESS"
    assert [(m.tls, m.login) for m in smtp_server.handler.messages + smtp_tls_server.handler.messages] == [
        (False, None),
        (True, USERNAME),
    ]


def test_without_a_security_setting_a_password_never_goes_unencrypted(run, smtp_server, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    doc = mail_policy(smtp_server, username=USERNAME, password={"secret": PASSWORD_ENV})
    del doc["steps"][1]["params"]["security"]
    result = run(doc)
    assert error(result) == (
        f"127.0.0.1:{smtp_server.port} does not offer STARTTLS: refusing to send the password unencrypted "
        "(set security: none to allow it on a network you trust, or use the server's TLS port)"
    )
    assert (smtp_server.handler.connections, smtp_server.handler.messages) == (1, [])


def test_an_untrusted_certificate_fails_without_retrying(run, smtp_tls_server):
    result = run(mail_policy(smtp_tls_server, tls_ca_file=None))
    assert result.status == "FAILED"
    assert error(result).startswith(
        f"127.0.0.1:{smtp_tls_server.port}: the server's TLS certificate was not accepted: [SSL: CERTIFICATE_VERIFY"
    )
    assert error(result).endswith("(for a private CA set tls_ca_file to its PEM file)")
    assert smtp_tls_server.handler.connections == 1


def test_security_that_does_not_match_the_server_fails_without_retrying(run, smtp_server):
    result = run(mail_policy(smtp_server, security="starttls"))
    assert error(result) == (
        f"127.0.0.1:{smtp_server.port}: connect failed: SMTP STARTTLS extension not supported by server. "
        "(security 'starttls' does not match the server: port 587 usually takes starttls, 465 ssl, 25 and local "
        "test servers none)"
    )
    assert smtp_server.handler.connections == 1


# -- retries and server errors ----------------------------------------------------------------


def test_a_4xx_reply_is_retried_then_the_message_goes_through(run, store, smtp_server):
    smtp_server.handler.data_replies = ["451 4.3.0 Mailbox busy, try again later"]
    result = run(mail_policy(smtp_server))
    assert result.status == "SUCCESS", error(result)
    assert (smtp_server.handler.data_attempts, len(smtp_server.handler.messages)) == (2, 1)
    assert [r["status"] for r in deliveries(store)] == ["sent"]


def test_a_5xx_reply_fails_at_once_with_the_server_text(run, store, smtp_server):
    smtp_server.handler.data_replies = ["554 5.7.1 Message rejected: looks like spam"]
    result = run(mail_policy(smtp_server))
    expected = f"127.0.0.1:{smtp_server.port} refused the message: 554 5.7.1 Message rejected: looks like spam"
    assert (result.status, error(result)) == ("FAILED", expected)
    assert (smtp_server.handler.data_attempts, smtp_server.handler.messages) == (1, [])
    assert (attempts(store, result), attempt_rows(store, result)) == (1, [(1, 1, "FAILED", expected)])
    assert [(r["recipient"], r["status"], r["error"]) for r in deliveries(store)] == [
        ("ann@example.com", "failed", expected)
    ]


def test_4xx_replies_that_do_not_go_away_fail_after_3_tries_counted_as_attempts(run, store, smtp_server):
    smtp_server.handler.data_replies = ["421 4.7.0 Too busy"] * 5
    result = run(mail_policy(smtp_server))
    expected = f"127.0.0.1:{smtp_server.port} refused the message: 421 4.7.0 Too busy (after 3 tries)"
    assert (result.status, error(result)) == ("FAILED", expected)
    assert (smtp_server.handler.connections, smtp_server.handler.data_attempts) == (3, 3)
    assert attempts(store, result) == 3
    assert attempt_rows(store, result) == [(1, 3, "FAILED", expected)]  # one engine attempt, its 3 tries
    assert [(r["status"], r["error"]) for r in deliveries(store)] == [("failed", expected)]


def test_a_5xx_reply_after_a_4xx_fails_at_once_saying_how_many_tries(run, store, smtp_server):
    smtp_server.handler.data_replies = ["451 4.3.0 Mailbox busy", "554 5.7.1 Message rejected"]
    result = run(mail_policy(smtp_server, attempts=5))
    expected = f"127.0.0.1:{smtp_server.port} refused the message: 554 5.7.1 Message rejected (after 2 tries)"
    assert (result.status, error(result), attempts(store, result)) == ("FAILED", expected, 2)
    assert smtp_server.handler.data_attempts == 2


def test_a_closed_port_is_tried_3_times_and_engine_show_says_so(cli, write_policy):
    port = closed_port()
    send = {"from": "reports@example.com", "to": "ann@example.com", "subject": "Hi", "text": "Hello"}
    send.update(security="none", backoff_s=0)
    env = {"ENGINE_SMTP_HOST": "127.0.0.1", "ENGINE_SMTP_PORT": str(port)}
    ran = cli("run", "--json", str(write_policy(policy({"id": "mail", "type": "send.email", "params": send}))), env=env)
    assert ran.returncode == 1, ran.stderr
    shown = cli("show", json.loads(ran.stdout)["run_id"], "--json")
    (step,) = json.loads(shown.stdout)["steps"]
    assert (step["status"], step["attempts"], step["error"]) == ("FAILED", 3, f"{refused(port)} (after 3 tries)")


def test_one_try_says_nothing_about_tries(run, store, smtp_server):
    port = closed_port()
    result = run(mail_policy(smtp_server, port=port, attempts=1))
    assert (error(result), attempts(store, result)) == (refused(port), 1)


def test_engine_retries_of_send_email_count_every_try(run, store, smtp_server):
    smtp_server.handler.data_replies = ["421 4.7.0 Too busy"] * 5
    doc = mail_policy(smtp_server, attempts=2)
    doc["steps"][1].update(on_error="retry_then_fail", retry={"max_attempts": 2, "backoff_s": 0})
    result = run(doc)
    expected = f"127.0.0.1:{smtp_server.port} refused the message: 421 4.7.0 Too busy (after 2 tries)"
    assert (error(result), attempts(store, result), smtp_server.handler.data_attempts) == (expected, 4, 4)
    assert attempt_rows(store, result) == [(1, 2, "FAILED", expected), (1, 4, "FAILED", expected)]


def test_refused_recipients_are_recorded_one_by_one(run, store, smtp_server):
    smtp_server.handler.refuse = {"gone@example.com": "550 5.1.1 No such user"}
    doc = mail_policy(smtp_server, to=["ann@example.com", "gone@example.com"])
    failed = run(doc)
    assert error(failed) == (
        f"127.0.0.1:{smtp_server.port} accepted the message for 1 of 2 recipients and refused gone@example.com: "
        "550 5.1.1 No such user (the accepted ones are recorded as sent and will not get it again; "
        "set on_refused: continue to accept this)"
    )
    assert [(r["recipient"], r["status"], r["error"]) for r in deliveries(store)] == [
        ("ann@example.com", "sent", None),
        ("gone@example.com", "failed", "550 5.1.1 No such user"),
    ]
    doc["steps"][1]["params"].update(on_refused="continue", force=True)
    result = run(doc)
    assert result.status == "SUCCESS"
    assert output(store, result)["refused"] == {"gone@example.com": "550 5.1.1 No such user"}
    assert [m.rcpt_tos for m in smtp_server.handler.messages] == [["ann@example.com"], ["ann@example.com"]]


# -- limits -----------------------------------------------------------------------------------


def test_recipient_limits_fail_validation_when_the_addresses_are_literals(run, smtp_server):
    many = [f"u{i}@example.com" for i in range(51)]
    with pytest.raises(PolicyError) as exc:
        run(mail_policy(smtp_server, to=many))
    assert [(p.pointer, p.message, p.hint) for p in exc.value.problems] == [
        (
            "/steps/1/params/to",
            "51 recipients (to, cc and bcc) are more than max_recipients (50)",
            "send to a mailing list address, split the step, or raise max_recipients",
        )
    ]
    with pytest.raises(PolicyError) as exc:
        run(mail_policy(smtp_server, to=["ann@example.com"], cc=["eve@evil.test"], allowed_domains=["example.com"]))
    assert [(p.pointer, p.message, p.hint) for p in exc.value.problems] == [
        (
            "/steps/1/params/cc/0",
            "'eve@evil.test': domain 'evil.test' is not in allowed_domains",
            "allowed: [example.com]; change the address or allowed_domains",
        )
    ]
    config = EngineConfig({"smtp": {"max_recipients": 2, "allowed_domains": ["*.example.com"]}})
    with pytest.raises(PolicyError) as exc:
        run(mail_policy(smtp_server, to=["a@x.example.com", "b@example.com", "c@y.example.com"]), config=config)
    assert [p.pointer for p in exc.value.problems] == ["/steps/1/params/to", "/steps/1/params/to/1"]
    assert smtp_server.handler.connections == 0


def test_malformed_literal_addresses_are_validation_errors(run, smtp_server):
    with pytest.raises(PolicyError) as exc:
        run(mail_policy(smtp_server, to="bob", reply_to=["ok@example.com", "x@"], **{"from": "reports@"}))
    assert [(p.pointer, p.message) for p in exc.value.problems] == [
        (
            "/steps/1/params/from",
            "'reports@' is not one email address like 'ann@example.com' or 'Ann <ann@example.com>'",
        ),
        (
            "/steps/1/params/reply_to/1",
            "'x@' is not one email address like 'ann@example.com' or 'Ann <ann@example.com>'",
        ),
        ("/steps/1/params/to/0", "'bob' is not one email address like 'ann@example.com' or 'Ann <ann@example.com>'"),
    ]


def test_a_literal_password_is_a_validation_error(run, smtp_tls_server):
    with pytest.raises(PolicyError) as exc:
        run(mail_policy(smtp_tls_server, password=PASSWORD))
    assert [(p.pointer, p.message, p.hint) for p in exc.value.problems] == [
        (
            "/steps/1/params/password",
            "a password written into the policy would be stored with every run",
            'name it as a secret read from the environment: {"secret": "SMTP_PASSWORD"}',
        )
    ]
    assert PASSWORD not in str(exc.value)


def test_recipients_from_a_ref_are_limited_before_any_connection(run, store, smtp_server):
    people = {"id": "people", "type": "core.value", "params": {"value": ["a@example.com", "b@example.com", "c@x.org"]}}
    doc = mail_policy(smtp_server, to={"ref": "ctx.people"}, max_recipients=2, allowed_domains=["example.com"])
    doc["steps"].insert(0, people)
    result = run(doc)
    assert (result.status, error(result)) == (
        "FAILED",
        "/steps/2/params/to/2: 'c@x.org': domain 'x.org' is not in allowed_domains (allowed: [example.com]; change "
        "the address or allowed_domains); /steps/2/params/to: 3 recipients (to, cc and bcc) are more than "
        "max_recipients (2) (send to a mailing list address, split the step, or raise max_recipients)",
    )
    assert smtp_server.handler.connections == 0
    assert deliveries(store) == []


# -- idempotency --------------------------------------------------------------------------------


def test_a_second_run_for_the_same_slot_is_a_duplicate_unless_forced(run, store, smtp_server):
    slot = "2026-12-01T07:00:00+00:00"
    first = run(mail_policy(smtp_server), scheduled_for=slot)
    again = run(mail_policy(smtp_server), scheduled_for=slot)
    assert (first.status, again.status) == ("SUCCESS", "SUCCESS")
    assert len(smtp_server.handler.messages) == 1
    sent, dup = output(store, first), output(store, again)
    assert dup["status"] == "duplicate"
    assert (dup["dedup_key"], dup["message_id"], dup["sent_at"]) == (
        sent["dedup_key"],
        sent["message_id"],
        sent["sent_at"],
    )
    assert [(r["run_id"], r["status"]) for r in deliveries(store)] == [
        (first.run_id, "sent"),
        (again.run_id, "duplicate"),
    ]

    run(mail_policy(smtp_server), scheduled_for="2026-12-02T07:00:00+00:00")  # the next day
    run(mail_policy(smtp_server, subject="Corrected figures"), scheduled_for=slot)  # other content
    run(mail_policy(smtp_server, to=["bob@example.com"]), scheduled_for=slot)  # other recipients
    forced = run(mail_policy(smtp_server, force=True), scheduled_for=slot)
    assert output(store, forced)["status"] == "sent"
    assert len(smtp_server.handler.messages) == 5
    assert output(store, forced)["dedup_key"] == sent["dedup_key"]


def test_two_runs_for_the_same_slot_at_once_send_once(store, write_policy, smtp_server):
    """A scheduler double-fire: the second run waits for the first one's claim, then finds it sent."""
    smtp_server.handler.quit_delay = 0.5  # keeps the first run inside its delivery for a while
    path = write_policy(mail_policy(smtp_server))
    slot = "2026-12-01T07:00:00+00:00"

    async def both():
        return await asyncio.gather(*(run_policy(path, store=store, scheduled_for=slot) for _ in range(2)))

    results = asyncio.run(both())
    assert [r.status for r in results] == ["SUCCESS", "SUCCESS"]
    assert len(smtp_server.handler.messages) == 1
    assert sorted(output(store, r)["status"] for r in results) == ["duplicate", "sent"]


def test_manual_runs_without_a_slot_each_send(run, smtp_server):
    run(mail_policy(smtp_server))
    run(mail_policy(smtp_server))
    assert len(smtp_server.handler.messages) == 2


def test_resume_after_a_failure_downstream_does_not_send_again(run, resume, store, smtp_server, tmp_path):
    flaky = {
        "id": "archive",
        "type": "test.flaky",
        "depends_on": ["mail"],
        "params": {"counter_file": str(tmp_path / "calls"), "fail_times": 1, "retryable": False},
    }
    failed = run(mail_policy(smtp_server, after=[flaky]))
    assert (failed.status, error(failed, "archive")) == ("FAILED", "flaky failure 1")
    resumed = resume(failed.run_id)
    assert resumed.status == "SUCCESS"
    assert len(smtp_server.handler.messages) == 1
    assert [r["status"] for r in deliveries(store)] == ["sent"]


@pytest.mark.parametrize("how", ["refused before acceptance", "timed out after acceptance"])
def test_a_run_that_fails_inside_send_email_and_is_resumed_sends_exactly_once(run, resume, store, smtp_server, how):
    doc = mail_policy(smtp_server, attempts=1)
    if how == "refused before acceptance":
        smtp_server.handler.data_replies = ["452 4.3.1 Insufficient system storage"]
    else:  # the server took the message, then the step ran out of time waiting for QUIT
        smtp_server.handler.quit_delay = 5
        doc["steps"][1]["timeout_s"] = 2  # ample for connecting and sending on a busy machine
    failed = run(doc)
    assert failed.status == "FAILED"
    smtp_server.handler.quit_delay = 0
    resumed = resume(failed.run_id)
    assert resumed.status == "SUCCESS", error(resumed)
    assert len(smtp_server.handler.messages) == 1
    statuses = [r["status"] for r in deliveries(store)]
    assert statuses == (["failed", "sent"] if how == "refused before acceptance" else ["sent", "duplicate"])


# -- dry runs and secrets -----------------------------------------------------------------------


def test_a_dry_run_writes_the_message_and_sends_nothing(run, store, smtp_server):
    result = run(mail_policy(smtp_server, bcc=["audit@example.com"]), dry_run=True)
    assert result.status == "SUCCESS"
    assert (smtp_server.handler.connections, deliveries(store)) == (0, [])
    preview_dir = Path(result.preview_dir)
    # the message's three previews; "report" is the copy of the PDF the report step made (a file)
    assert sorted(p.name for p in preview_dir.iterdir()) == ["mail.eml", "mail.html", "mail.json", "report"]
    preview = json.loads((preview_dir / "mail.json").read_text())
    assert {k: preview[k] for k in ("status", "to", "cc", "bcc", "subject", "attachments", "eml")} == {
        "status": "preview",
        "to": ["ann@example.com"],
        "cc": [],
        "bcc": ["audit@example.com"],
        "subject": "Sales for daily",
        "attachments": ["report.pdf"],
        "eml": str(preview_dir / "mail.eml"),
    }
    msg = email.message_from_bytes((preview_dir / "mail.eml").read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Sales for daily"
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
    ]
    assert (preview_dir / "mail.html").read_text() == REPORT_HTML


def test_the_password_is_never_written_to_the_database_logs_or_previews(cli, write_policy, smtp_tls_server, state_dir):
    env = {"ENGINE_PLUGINS": "tests.stepkit,tests.sendkit", **ALLOW_POLICY_HOST}
    good = write_policy(mail_policy(smtp_tls_server), "good.json")
    wrong_user = write_policy(mail_policy(smtp_tls_server, username="nobody"), "wrong.json")
    # a password from the engine config instead of a secret, with a server that echoes it
    from_config = mail_policy(smtp_tls_server, username="nobody", password=None, attempts=1)
    del from_config["steps"][1]["params"]["password"]
    config = write_policy(from_config, "config.json")

    assert cli("run", str(good), env=env).returncode == 0
    assert cli("run", "--dry-run", str(good), env=env).returncode == 0
    wrong = cli("run", "--json", str(wrong_user), env=env)
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout)["steps"][1]["error"] == (
        f"127.0.0.1:{smtp_tls_server.port} refused the login as 'nobody': 535 5.7.8 no user 'nobody' with "
        "password *** (check username and password; Gmail needs an app password)"
    )
    assert cli("run", str(config), env={**env, "ENGINE_SMTP_PASSWORD": PASSWORD}).returncode == 1

    assert len(smtp_tls_server.handler.messages) == 1
    files = [p for p in state_dir.rglob("*") if p.is_file()]
    assert {"engine.db", "engine.log", "mail.eml", "mail.html", "mail.json"} <= {p.name for p in files}
    leaks = [str(p) for p in files if PASSWORD.encode() in p.read_bytes()]
    assert leaks == []
    assert PASSWORD_ENV  # named in the policy, read from the environment


def test_from_and_reply_to_may_be_expressions_checked_when_the_step_runs(run, store, smtp_server):
    who = {"id": "who", "type": "core.value", "params": {"value": {"sender": "reports@example.com", "reply": "x@"}}}
    doc = mail_policy(
        smtp_server,
        reply_to={"ref": "ctx.who.sender"},
        **{"from": {"template": "Reports <{{ who.sender }}>"}},
    )
    doc["steps"].insert(0, who)
    result = run(doc)
    assert result.status == "SUCCESS", error(result)
    (got,) = smtp_server.handler.messages
    assert (got.message["From"], got.message["Reply-To"]) == ("Reports <reports@example.com>", "reports@example.com")

    doc["steps"][2]["params"].update(reply_to={"ref": "ctx.who.reply"}, **{"from": {"template": "{{ who.reply }}"}})
    result = run(doc)
    assert (result.status, error(result)) == (
        "FAILED",
        "/steps/2/params/from: 'x@' is not one email address like 'ann@example.com' or 'Ann <ann@example.com>'; "
        "/steps/2/params/reply_to/0: 'x@' is not one email address like 'ann@example.com' or 'Ann <ann@example.com>'",
    )
    assert len(smtp_server.handler.messages) == 1


def test_timeout_s_bounds_the_whole_conversation_not_each_reply(run, store, smtp_server):
    """Each reply comes in 0.6 s, under timeout_s; the conversation would take longer: it stops at 1 s."""
    smtp_server.handler.reply_delay = 0.6  # MAIL FROM, then RCPT TO: 1.2 s before DATA
    started = time.monotonic()
    result = run(mail_policy(smtp_server, timeout_s=1, attempts=1))
    took = time.monotonic() - started
    assert (result.status, error(result)) == (
        "FAILED",
        f"127.0.0.1:{smtp_server.port}: no reply within timeout_s (1 s) for the whole conversation "
        "(it was at send; a slow or stalled server)",
    )
    assert smtp_server.handler.messages == [] and took < 10
    assert [(r["status"], r["error"]) for r in deliveries(store)] == [("failed", error(result))]


def test_timeout_s_bounds_a_server_that_never_greets(run, monkeypatch):
    """A server that accepts the connection and says nothing: the step gives up after timeout_s."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        monkeypatch.setenv("ENGINE_SMTP_ALLOW_POLICY_HOST", "true")
        doc = mail_policy(SmtpServer("127.0.0.1", port, None), timeout_s=0.5, attempts=2)
        result = run(doc)
    assert (result.status, error(result)) == (
        "FAILED",
        f"127.0.0.1:{port}: no reply within timeout_s (0.5 s) for the whole conversation "
        "(it was at connect; a slow or stalled server) (after 2 tries)",
    )
