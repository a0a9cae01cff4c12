"""The flagship (a CSV to an emailed PDF) through the REST API, as a team would use it: an author
creates it, a real run is refused until an approver approves its hash, the run is watched live
over server-sent events, the PDF is downloaded and read, the delivery is in the ledger and the
message in a real SMTP sink."""

from __future__ import annotations

import io
import json
import time

from pypdf import PdfReader

from engine.config import EngineConfig
from tests.conftest import ROOT
from tests.server.conftest import sse_events
from tests.smtpserver import *  # noqa: F403

EXAMPLES = ROOT / "policies" / "examples"


def flagship(archive) -> dict:
    doc = json.loads((EXAMPLES / "sales_report.json").read_text())
    doc.pop("$schema", None)
    doc["steps"][0]["params"]["path"] = str(EXAMPLES / "data" / "sales.csv")  # no file: no folder to be relative to
    doc["params"]["archive"]["default"] = str(archive)
    return doc


def test_the_flagship_through_the_api(start_server, smtp_server, tmp_path):  # noqa: F811
    config = EngineConfig(
        {
            "smtp": {"host": smtp_server.host, "port": smtp_server.port, "security": "none"},
            "governance": {"separate_approver": True},
        },
        None,
        {},
    )
    live = start_server(config=config)
    author = live.as_role("author", name="ann")
    approver = live.as_role("approver", name="bob")

    created = author.post("/policies", content=json.dumps(flagship(tmp_path / "archive")))
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["id"] == "sales-report" and record["version"] == 1 and record["approved"] is False
    assert record["problems"] == []
    assert created.headers["location"] == "/api/v1/policies/sales-report"

    refused = author.post("/policies/sales-report/runs", json={"params": {}})
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["status"] == 409 and problem["type"] == "/problems/not-approved"
    assert f"engine approve sales-report --hash {record['approval_hash']}" in problem["detail"]
    assert problem["approve"]["hash"] == record["approval_hash"]

    # the author may not approve (its role), and an admin-author would be refused by separate_approver
    assert author.post("/policies/sales-report/approvals", json={"hash": record["approval_hash"]}).status_code == 403
    own = live.as_role("admin", name="ann-admin")
    mine = own.put("/policies/sales-report", content=json.dumps({**flagship(tmp_path / "archive"), "title": "Mine"}))
    assert mine.status_code == 200 and mine.json()["version"] == 2
    selfish = own.post("/policies/sales-report/approvals", json={"hash": mine.json()["approval_hash"]})
    assert selfish.status_code == 403
    assert "separate_approver" in selfish.json()["detail"]
    back = author.put("/policies/sales-report", content=json.dumps(flagship(tmp_path / "archive")))
    assert back.json()["version"] == 1 and back.json()["new"] is False  # the same content is version 1

    approved = approver.post(
        "/policies/sales-report/approvals", json={"hash": record["approval_hash"][:16], "note": "numbers checked"}
    )
    assert approved.status_code == 201, approved.text
    assert approved.json()["approved"] is True and approved.json()["approved_by"] == "bob"
    pending = author.get("/approvals", params={"state": "pending"}).json()["approvals"]
    assert pending == []  # version 1 is the latest again, and approved

    started = author.post("/policies/sales-report/runs", json={"params": {}})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    events = sse_events(author, f"/runs/{run_id}/events", timeout=120)
    kinds = [name for name, _ in events]
    assert kinds[0] == "snapshot" and kinds[-1] == "end"
    end = events[-1][1]
    assert end["status"] == "SUCCESS", end
    step_events = [data for name, data in events if name == "step"]
    seen = {(e["step_id"], e.get("status")) for e in step_events}
    for step in ("raw", "build", "pdf", "mail", "archive"):
        assert (step, "SUCCESS") in seen or events[0][1]["steps"][step]["status"] == "SUCCESS"
    assert ("pdf", "RUNNING") in seen  # transitions as they were committed, not only the end

    run = author.get(f"/runs/{run_id}").json()
    assert run["actor"] == "ann" and run["policy_version"] == 1 and run["approval"]["approved_by"] == "bob"
    assert {s["id"]: s["status"] for s in run["steps"]}["mail"] == "SUCCESS"

    # the PDF, found among the run's artifacts, downloaded by its SHA-256
    (listed,) = [a for a in run["artifacts"] if a["media_type"] == "application/pdf"]
    assert listed["step_id"] == "pdf" and listed["url"] == f"/api/v1/artifacts/{listed['sha256']}"
    pdf = author.get(f"/artifacts/{listed['sha256']}")
    archived = list((tmp_path / "archive").rglob("*.pdf"))
    assert len(archived) == 1 and archived[0].read_bytes() == pdf.content
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "$1,110,626" in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()

    (received,) = smtp_server.handler.messages
    assert sorted(received.rcpt_tos) == ["cfo-office@example.com", "finance-team@example.com"]
    (attachment,) = [p for p in received.message.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert attachment.get_content() == pdf.content

    ledger = author.get("/deliveries", params={"policy": "sales-report"}).json()["deliveries"]
    assert {d["recipient"] for d in ledger if d["status"] == "sent"} >= {"finance-team@example.com"}
    assert all(d["run_id"] == run_id for d in ledger)

    reports = author.get("/reports").json()["reports"]
    assert [r["report_id"] for r in reports] == ["monthly-sales"]
    snapshot = author.get("/reports/monthly-sales/versions/1").json()
    assert snapshot["run_id"] == run_id and snapshot["snapshot"]

    logs = author.get(f"/runs/{run_id}/logs").json()["events"]
    assert logs and all(e["run_id"] == run_id for e in logs)

    for _ in range(100):  # run.finished is audited just after the run's end is committed
        audit = author.get("/audit", params={"policy": "sales-report"}).json()["entries"]
        actions = [e["action"] for e in audit]
        if "run.finished" in actions:
            break
        time.sleep(0.05)
    assert "policy.approved" in actions and "run.refused" in actions and "run.finished" in actions
    assert author.get("/audit/verify").json()["ok"] is True
