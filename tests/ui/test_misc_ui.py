"""The reports, schedules, deliveries, audit and settings pages, in a real browser against a real
server: a schedule edited with its next fires previewed as you type, enabled and disabled; a test
email through a real SMTP sink; the audit chain verified; what a real run delivered and reported."""

from __future__ import annotations

import json
import re

import httpx
from playwright.sync_api import expect

from engine.config import EngineConfig
from tests.server.conftest import hello
from tests.smtpserver import *  # noqa: F403
from tests.ui.conftest import login


def _create(admin: httpx.Client, document: dict) -> dict:
    created = admin.post("/policies", content=json.dumps(document))
    assert created.status_code == 201, created.text
    return created.json()


def test_a_schedule_edit_previews_the_next_fires_as_you_type_and_saves(start_server, page_of):
    live = start_server(scheduler=False)
    admin = live.as_role("admin")
    _create(admin, hello("hello", schedule={"cron": "0 7 * * 1-5", "timezone": "Europe/Berlin"}))
    page = page_of(live, live.token("ann", "author"))
    page.goto("/schedules")
    card = page.locator("section#hello")
    expect(card.locator(".description")).to_contain_text("at 07:00 on Mon-Fri (Europe/Berlin)")
    expect(card.locator("table.fires").first.locator("tbody tr")).to_have_count(5)
    expect(card.locator("table.fires").first).to_contain_text("07:00:00+01:00")

    card.get_by_text("Edit the schedule").click()
    cron = card.get_by_label("Cron")
    preview = card.locator(".preview")
    cron.fill("")
    cron.press_sequentially("30 6 * * *", delay=20)  # keyup by keyup, as a person types
    expect(preview.locator(".preview-description")).to_have_text("at 06:30 every day (Europe/Berlin)")
    expect(preview.locator("table.fires tbody tr")).to_have_count(5)
    expect(preview.locator("table.fires")).to_contain_text("06:30:00+01:00")

    cron.fill("")
    cron.press_sequentially("61 * * * *", delay=20)
    alert = preview.get_by_role("alert")
    expect(alert).to_contain_text("Cron")
    expect(alert).to_contain_text("minute field '61': 61 is out of range 0-59")
    assert admin.get("/schedules/hello").json()["schedule"]["cron"] == "0 7 * * 1-5"  # nothing saved

    cron.fill("")
    cron.press_sequentially("15 8 * * 1", delay=20)
    expect(preview.locator(".preview-description")).to_have_text("at 08:15 on Mon (Europe/Berlin)")
    card.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/schedules\?saved=hello"))
    card = page.locator("section#hello")
    expect(card.locator(".description")).to_contain_text("at 08:15 on Mon (Europe/Berlin)")
    saved = admin.get("/schedules/hello").json()
    assert saved["schedule"]["cron"] == "15 8 * * 1" and saved["version"] == 2

    # saving an invalid one (no JavaScript needed): the page again, the problem next to the form
    card.get_by_text("Edit the schedule").click()
    card.get_by_label("Cron").fill("")
    card.get_by_label("Interval (minutes)").fill("90")
    card.get_by_label("Time zone").fill("Mars/Olympus")
    card.get_by_role("button", name="Save").click()
    expect(page.locator("section#hello .preview").get_by_role("alert")).to_contain_text(
        "unknown time zone 'Mars/Olympus'"
    )
    assert admin.get("/schedules/hello").json()["version"] == 2

    # disable, enable
    page.goto("/schedules")
    card = page.locator("section#hello")
    card.get_by_role("button", name="Disable").click()
    page.wait_for_url(re.compile(r"saved=hello"))
    expect(page.locator("section#hello h2 .badge").first).to_have_text("disabled")
    assert admin.get("/schedules/hello").json()["enabled"] is False
    page.locator("section#hello").get_by_role("button", name="Enable").click()
    page.wait_for_url(re.compile(r"saved=hello"))
    expect(page.locator("section#hello h2 .badge").first).to_have_text("enabled")
    assert admin.get("/schedules/hello").json()["enabled"] is True

    # a viewer sees the schedule, with no button to change it
    viewer = page_of(live, live.token("vic", "viewer"))
    viewer.goto("/schedules")
    expect(viewer.locator("section#hello .description")).to_contain_text("at 08:15 on Mon")
    expect(viewer.get_by_role("button", name="Disable")).to_have_count(0)
    expect(viewer.get_by_text("Edit the schedule")).to_have_count(0)
    refused = viewer.request.post("/schedules/hello/enabled", form={"enabled": "false", "csrf_token": "wrong"})
    assert refused.status == 403  # a wrong CSRF token


def test_the_test_email_reaches_the_server_and_the_page_shows_its_reply(start_server, page_of, smtp_server):  # noqa: F811
    smtp = {"host": smtp_server.host, "port": smtp_server.port, "security": "none", "password": "n0t-sh0wn-pw"}
    live = start_server(config=EngineConfig({"smtp": smtp}, None, {}), scheduler=False)
    page = page_of(live, live.token("ada", "admin"))
    page.goto("/settings")
    settings = page.locator("table.settings")
    expect(settings).to_contain_text(smtp_server.host)
    expect(settings).to_contain_text(str(smtp_server.port))
    expect(settings.locator("tr", has_text="password")).to_contain_text("set")
    assert "n0t-sh0wn-pw" not in page.content()

    page.get_by_label("To").fill("ops@example.com")
    page.get_by_role("button", name="Send test email").click()
    result = page.locator("#test-email-result")
    expect(result).to_contain_text("accepted the message to ops@example.com")
    expect(result.locator(".reply")).to_contain_text("OK: queued")
    (received,) = smtp_server.handler.messages
    assert received.rcpt_tos == ["ops@example.com"]
    assert received.message["Subject"] == "policy-engine: test email"

    smtp_server.handler.refuse["gone@example.com"] = "550 5.1.1 No such user"
    page.get_by_label("To").fill("gone@example.com")
    page.get_by_role("button", name="Send test email").click()
    expect(result.get_by_role("alert")).to_contain_text(
        "refused every recipient: gone@example.com: 550 5.1.1 No such user"
    )
    assert len(smtp_server.handler.messages) == 1
    sent = live.as_role("admin").get("/audit", params={"action": "smtp.test_email"}).json()["entries"]
    assert [e["details"]["ok"] for e in sent] == [True, False] and all("n0t-sh0wn-pw" not in str(e) for e in sent)


def test_settings_are_for_admins_only(start_server, page_of):
    live = start_server(scheduler=False)
    page = page_of(live, live.token("ann", "author"))
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings")).to_have_count(0)
    response = page.goto("/settings")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="Forbidden")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("role author")
    sent = page.request.post("/settings/test-email", form={"to": "x@example.com", "csrf_token": "wrong"})
    assert sent.status == 403


def test_audit_verify_shows_ok_and_the_head_hash(start_server, page_of):
    live = start_server(scheduler=False)
    admin = live.as_role("admin")
    _create(admin, hello("hello"))
    _create(admin, hello("other"))
    page = page_of(live, live.token("vic", "viewer"))
    head = admin.get("/audit/verify").json()["head"]
    page.goto("/audit")
    expect(page.locator("table.audit tbody tr")).to_have_count(head["seq"])
    page.get_by_role("button", name="Verify chain").click()
    result = page.locator("#verify-result")
    expect(result.locator(".badge")).to_have_text("ok")
    expect(result.locator(".head-hash")).to_have_text(head["hash"])
    expect(result).to_contain_text(f"seq {head['seq']}")

    page.get_by_label("Policy").fill("other")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"policy=other"))
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("policy.version_added")
    page.get_by_label("Since (UTC)").fill("yesterday")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("alert")).to_contain_text("since 'yesterday': an ISO 8601 time")


REPORT_POLICY = {
    "schema_version": 1,
    "id": "sales-pdf",
    "title": "Sales by region",
    "steps": [
        {
            "id": "sales",
            "type": "core.value",
            "params": {"value": [{"region": "EMEA", "revenue": 1200}, {"region": "APAC", "revenue": 780}]},
        },
        {
            "id": "build",
            "type": "report.build",
            "params": {
                "report_id": "sales-by-region",
                "title": "Sales by region",
                "sections": [
                    {
                        "type": "metric_card",
                        "label": "Revenue",
                        "value": {"data": {"ref": "ctx.sales"}, "column": "revenue", "agg": "sum"},
                    }
                ],
            },
        },
        {"id": "html", "type": "render.html", "params": {"report": {"ref": "ctx.build"}}},
        {"id": "pdf", "type": "render.pdf", "params": {"report": {"ref": "ctx.build"}}},
        {
            "id": "mail",
            "type": "send.email",
            "params": {
                "from": "reports@example.com",
                "to": ["finance@example.com"],
                "cc": ["cfo@example.com"],
                "subject": "Sales",
                "text": "Attached.",
                "attachments": [{"artifact": {"ref": "ctx.pdf.pdf"}}],
            },
        },
    ],
}


def test_reports_and_deliveries_list_what_a_real_run_made(start_server, page_of, smtp_server):  # noqa: F811
    smtp = {"host": smtp_server.host, "port": smtp_server.port, "security": "none"}
    live = start_server(config=EngineConfig({"smtp": smtp}, None, {}), scheduler=False)
    admin = live.as_role("admin")
    record = _create(admin, REPORT_POLICY)
    assert admin.post("/policies/sales-pdf/approvals", json={"hash": record["approval_hash"]}).status_code == 201
    started = admin.post("/policies/sales-pdf/runs", json={"params": {}})
    assert started.status_code == 202, started.text
    run = live.wait_run(admin, started.json()["run_id"])
    assert run["status"] == "SUCCESS", run
    files = {a["media_type"]: a["sha256"] for a in run["artifacts"]}
    message_id = admin.get("/deliveries").json()["deliveries"][0]["message_id"]

    page = page_of(live, live.token("vic", "viewer"))
    page.goto("/reports")
    report = page.locator("section#report-sales-by-region")
    expect(report.get_by_role("heading")).to_contain_text("Sales by region")
    row = report.locator("table.versions tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("v1")
    expect(row.get_by_role("link", name=run["run_id"])).to_have_attribute("href", f"/runs/{run['run_id']}")
    html_link = row.get_by_role("link", name=re.compile("Open HTML page"))
    expect(html_link).to_have_attribute("href", f"/files/artifacts/{files['text/html']}")
    expect(html_link).to_have_attribute("target", "_blank")

    row.get_by_role("link", name="View PDF").click()
    page.wait_for_url(re.compile(r"/reports/sales-by-region\?version=1"))
    frame = page.locator("iframe")
    expect(frame).to_have_attribute("src", f"/files/artifacts/{files['application/pdf']}")
    shown = page.request.get(f"/files/artifacts/{files['application/pdf']}")  # with the session
    assert shown.status == 200 and shown.headers["content-type"] == "application/pdf"
    snapshot = admin.get("/reports/sales-by-region/versions/1").json()
    expect(page.locator("main")).to_contain_text(f"Snapshot hash {snapshot['hash']}")

    page.goto("/deliveries")
    rows = page.locator("table.deliveries tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("sales-pdf")
    expect(rows.first).to_contain_text("2 recipients")
    expect(rows.first).to_contain_text("manual run")
    expect(rows.first.locator(".badge")).to_have_text("sent")
    expect(rows.first).to_contain_text(message_id)
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"status=failed"))
    expect(page.locator("table.deliveries tbody")).to_contain_text("No deliveries match these filters")


def test_the_forms_work_without_javascript(start_server, browser):
    live = start_server(scheduler=False)
    admin = live.as_role("admin")
    _create(admin, hello("hello", schedule={"cron": "0 7 * * 1-5", "timezone": "Europe/Berlin"}))
    context = browser.new_context(base_url=live.url, java_script_enabled=False)
    try:
        page = context.new_page()
        login(page, live.token("ann", "author"), then="/schedules")
        card = page.locator("section#hello")
        card.get_by_text("Edit the schedule").click()
        card.get_by_label("Cron").fill("0 9 * * *")
        card.get_by_role("button", name="Preview").click()  # a whole page with the preview
        expect(page.locator("section#hello .preview-description")).to_have_text("at 09:00 every day (Europe/Berlin)")
        assert admin.get("/schedules/hello").json()["version"] == 1
        page.locator("section#hello").get_by_role("button", name="Save").click()
        expect(page.locator("section#hello .description")).to_contain_text("at 09:00 every day (Europe/Berlin)")

        page.goto("/audit")
        page.get_by_role("button", name="Verify chain").click()
        page.wait_for_url("**/audit/verify")
        head = admin.get("/audit/verify").json()["head"]
        expect(page.locator("#verify-result .head-hash")).to_have_text(head["hash"])
    finally:
        context.close()
