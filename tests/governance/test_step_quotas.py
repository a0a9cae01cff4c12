"""Quotas and audit entries that steps cause: emails handed to a real SMTP server, SQL queries run."""

from __future__ import annotations

import sqlite3

import tests.sendkit  # noqa: F401  (test.report: a real PDF and an HTML page as artifacts)
from engine import EngineConfig
from engine.governance import audit
from tests.conftest import policy
from tests.smtpserver import *  # noqa: F403  (the SMTP server fixtures)


def mail(server, pid="daily", to=("ann@example.com",)):
    send = {
        "from": "Reports <reports@example.com>",
        "to": list(to),
        "subject": "Sales",
        "text": "Sales were fine.",
        "backoff_s": 0,
        "force": True,  # every run sends: the quota is what stops it
        **server.params(),
    }
    return policy({"id": "mail", "type": "send.email", "params": send}, id=pid)


def config(**quotas) -> EngineConfig:
    return EngineConfig({"smtp": {"allow_policy_host": True}, "quotas": quotas}, None, {})


def test_emails_per_day_counts_recipients_and_refuses_before_the_server_sees_anything(run, store, smtp_server):
    cfg = config(emails_per_day=3)
    first = run(mail(smtp_server, to=("ann@example.com", "bob@example.com")), config=cfg, actor="user:ada")
    assert first.status == "SUCCESS"
    second = run(mail(smtp_server, to=("ann@example.com", "bob@example.com")), config=cfg, actor="user:ada")
    assert second.status == "FAILED"
    (step,) = second.steps
    assert step.error.startswith("quota emails_per_day reached for user:ada: 2 used in the last day (limit 3)")
    assert step.attempts == 1  # not retried
    assert len(smtp_server.handler.messages) == 1
    dry = run(mail(smtp_server), config=cfg, actor="user:ada", dry_run=True)
    assert dry.status == "SUCCESS"  # a dry run counts nothing
    assert run(mail(smtp_server), config=cfg, actor="user:ada").status == "SUCCESS"  # 1 more fits
    sent = audit.entries(store.engine, action="delivery.sent")
    assert [(e.subject, e.details["recipients"], e.details["step_id"]) for e in sent] == [
        (first.run_id, 2, "mail"),
        (sent[1].subject, 1, "mail"),
    ]
    assert all("ann@" not in str(e.details) and "bob@" not in str(e.details) for e in audit.entries(store.engine))
    assert [e.details["quota"] for e in audit.entries(store.engine, action="quota.refused")] == ["emails_per_day"]
    assert audit.verify(store.engine).ok


def test_sql_queries_per_hour_counts_each_query(run, store, tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as con:
        con.execute("create table orders (id integer)")
        con.execute("insert into orders values (1)")
    doc = policy(
        {"id": "q", "type": "fetch.sql", "params": {"database": str(db), "query": "select id from orders"}},
        id="sql",
    )
    cfg = EngineConfig({"fetch": {"allowed_paths": [str(tmp_path)]}, "quotas": {"sql_queries_per_hour": 1}}, None, {})
    assert run(doc, config=cfg, actor="user:ada").status == "SUCCESS"
    refused = run(doc, config=cfg, actor="user:ada")
    assert refused.status == "FAILED"
    assert "quota sql_queries_per_hour reached for user:ada: 1 used in the last hour" in refused.steps[0].error
    assert run(doc, config=cfg, actor="user:bob").status == "SUCCESS"


def test_emails_carry_the_audit_head_when_asked(run, store, smtp_server):
    cfg = EngineConfig({"smtp": {"allow_policy_host": True}, "governance": {"audit_head_in_reports": True}}, None, {})
    result = run(mail(smtp_server), config=cfg, actor="user:ada")
    assert result.status == "SUCCESS"
    header = smtp_server.handler.messages[0].message["X-Audit-Head"]
    seq, digest = header.split()
    entries = {e.seq: e.hash for e in audit.entries(store.engine)}
    assert entries[int(seq)] == digest  # the head at send time: the run's start is in it
    assert run(mail(smtp_server), config=config(), actor="user:ada").status == "SUCCESS"
    assert smtp_server.handler.messages[1].message["X-Audit-Head"] is None
