"""The promise of docs/steps/send.md#idempotency, one claim per test, against a real SMTP server:
once per logical date (the schedule slot, or a manual run's own id), whatever resumes and
second runs of a slot do, and a new delivery for every manual ``engine run``."""

from __future__ import annotations

import json

import tests.sendkit  # noqa: F401  (test.report: a real PDF and an HTML page as artifacts)
from tests import pg
from tests.conftest import policy
from tests.smtpserver import *  # noqa: F403  (the SMTP server fixtures)
from tests.smtpserver import ALLOW_POLICY_HOST

SLOT = "2026-12-01T07:00:00+00:00"
PLUGINS = {"ENGINE_PLUGINS": "tests.stepkit,tests.sendkit", **ALLOW_POLICY_HOST}


def mail(server, sid="mail", **params):
    send = {
        "from": "reports@example.com",
        "to": ["ann@example.com"],
        "subject": "Daily sales",
        "text": "Revenue was 1,234.50 EUR.",
        "backoff_s": 0,
        **server.params(),
        **params,
    }
    return {"id": sid, "type": "send.email", "params": send}


def failing(tmp_path, fail_times=1):
    """A step after the mail that fails ``fail_times`` runs, then succeeds (not retried)."""
    params = {"counter_file": str(tmp_path / "calls"), "fail_times": fail_times, "retryable": False}
    return {"id": "archive", "type": "test.flaky", "depends_on": ["mail"], "params": params}


def deliveries(state_dir):
    return pg.sql(state_dir, "select run_id, step_id, status, dedup_key from deliveries order by id")


def test_every_manual_engine_run_sends_even_after_the_scheduled_run_of_the_slot(
    run, cli, write_policy, state_dir, smtp_server
):
    doc = policy(mail(smtp_server), id="daily")
    scheduled = run(doc, scheduled_for=SLOT)
    manual = [json.loads(cli("run", "--json", str(write_policy(doc)), env=PLUGINS).stdout) for _ in range(2)]
    assert [r["status"] for r in manual] == ["SUCCESS", "SUCCESS"]
    assert len(smtp_server.handler.messages) == 3
    rows = deliveries(state_dir)
    assert [(r[0], r[2]) for r in rows] == [
        (scheduled.run_id, "sent"),
        (manual[0]["run_id"], "sent"),
        (manual[1]["run_id"], "sent"),
    ]
    assert len({r[3] for r in rows}) == 3  # each manual run is its own logical date


def test_a_resumed_scheduled_run_keeps_its_slot_so_another_run_of_the_slot_is_a_duplicate(
    run, resume, state_dir, smtp_server, tmp_path
):
    failed = run(policy(mail(smtp_server), failing(tmp_path), id="daily"), scheduled_for=SLOT)
    assert failed.status == "FAILED"
    assert resume(failed.run_id).status == "SUCCESS"
    again = run(policy(mail(smtp_server), failing(tmp_path), id="daily"), scheduled_for=SLOT)
    assert again.status == "SUCCESS"
    assert len(smtp_server.handler.messages) == 1
    rows = deliveries(state_dir)
    assert [(r[0], r[2]) for r in rows] == [(failed.run_id, "sent"), (again.run_id, "duplicate")]
    assert rows[0][3] == rows[1][3]


def test_an_on_failure_alert_goes_out_once_per_text_across_resumes(run, resume, state_dir, smtp_server, tmp_path):
    broken = failing(tmp_path, fail_times=99)
    del broken["depends_on"]
    same = policy(broken, id="daily", on_failure=[mail(smtp_server, "alert", subject="FAILED: daily")])
    first = run(same)
    assert (first.status, resume(first.run_id).status) == ("FAILED", "FAILED")
    assert [r[2] for r in deliveries(state_dir)] == ["sent", "duplicate"]

    each = policy(
        broken, id="daily", on_failure=[mail(smtp_server, "alert", subject={"template": "FAILED ({{ run.attempt }})"})]
    )
    second = run(each)
    assert (second.status, resume(second.run_id).status) == ("FAILED", "FAILED")
    assert [m.message["Subject"] for m in smtp_server.handler.messages] == [
        "FAILED: daily",
        "FAILED (1)",
        "FAILED (2)",
    ]
