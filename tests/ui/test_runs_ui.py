"""Run pages in a real browser: a running run followed live (no reload), its graph and Gantt, a
dry run's PDF shown inline, Resume and Cancel by role, the list's filters and pages."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx

from tests.server.test_flagship_api import flagship


def approved(client: httpx.Client, doc: dict[str, Any]) -> dict[str, Any]:
    """Create ``doc`` through the REST API and approve its hash (the client is an admin)."""
    created = client.post("/policies", content=json.dumps(doc))
    assert created.status_code == 201, created.text
    record = created.json()
    ok = client.post(f"/policies/{doc['id']}/approvals", json={"hash": record["approval_hash"]})
    assert ok.status_code == 201, ok.text
    return record


def sleeper(policy_id: str, seconds: float) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "id": policy_id,
        "steps": [
            {"id": "nap", "type": "test.sleep", "params": {"seconds": seconds, "value": {"slept": seconds}}},
            {"id": "after", "type": "core.value", "params": {"value": 1}, "depends_on": ["nap"]},
        ],
    }


def start(client: httpx.Client, policy_id: str, dry_run: bool = False) -> str:
    path = f"/policies/{policy_id}/dry-run" if dry_run else f"/policies/{policy_id}/runs"
    answer = client.post(path, json={"params": {}})
    assert answer.status_code == 202, answer.text
    return answer.json()["run_id"]


def test_a_running_run_is_followed_live_to_success(start_server, page_of):
    live = start_server(scheduler=False)
    token = live.token("ann", "admin")
    api = live.client(token)
    approved(api, sleeper("napper", 3))
    page = page_of(live, token)  # logged in before the run starts: the run outlasts the page's load
    page.goto("/runs")
    run_id = start(api, "napper")
    page.goto(f"/runs/{run_id}")
    status = page.locator("#run-status")
    assert status.get_attribute("data-status") == "RUNNING"
    assert status.inner_text() == "RUNNING"
    assert page.locator(f'[data-run-events="/runs/{run_id}/events"]').count() == 1
    assert page.get_by_role("button", name="Cancel run").is_visible()  # an admin may cancel it
    page.evaluate("window.__same_page = true")  # gone if the page were reloaded or navigated

    page.locator('#run-status[data-status="SUCCESS"]').wait_for(timeout=20_000)
    assert status.inner_text() == "SUCCESS"
    assert page.evaluate("window.__same_page === true")
    assert page.url.endswith(f"/runs/{run_id}")
    # the other live parts followed: steps, graph (a node per step, coloured by state), Gantt, outputs
    page.locator('#run-steps tr[data-step="after"][data-state="SUCCESS"]').wait_for()
    assert page.locator("#run-steps tr[data-step]").count() == 2
    page.locator('#run-graph svg g.node[data-step="after"][data-state="SUCCESS"]').wait_for()
    nodes = page.locator("#run-graph svg g.node")
    assert nodes.count() == 2
    assert {nodes.nth(i).get_attribute("data-state") for i in range(2)} == {"SUCCESS"}
    assert page.locator("#run-gantt svg.gantt g[data-step]").count() == 2
    assert page.get_by_role("button", name="Cancel run").count() == 0  # not running any more
    assert "slept" in page.locator("#run-outputs").inner_text()  # the step's output keys
    header = page.locator("#run-summary").inner_text()
    assert "napper" in header and "ann" in header and "approved by ann" in header


def test_a_dry_run_shows_its_pdf_inline(start_server, page_of, tmp_path):
    live = start_server(scheduler=False)
    token = live.token("ann", "author")
    api = live.client(token)
    created = api.post("/policies", content=json.dumps(flagship(tmp_path / "archive")))
    assert created.status_code == 201, created.text
    run_id = start(api, "sales-report", dry_run=True)
    run = live.wait_run(api, run_id, timeout=120)
    assert run["status"] == "SUCCESS", run

    page = page_of(live, token)
    page.goto(f"/runs/{run_id}")
    assert page.locator("#run-status").inner_text() == "SUCCESS"
    assert page.locator("[data-run-events]").count() == 0  # finished: no event stream
    frame = page.locator("#run-outputs iframe").first
    src = frame.get_attribute("src")
    assert src is not None and src.startswith("/files/artifacts/")
    pdf = page.request.get(src)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF-")
    # every stored file is listed with a link of the session (no bearer token needed)
    links = page.locator("#run-outputs table.artifacts a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert src in hrefs and all(h.startswith("/files/artifacts/") for h in hrefs)
    html = [h for h in hrefs if page.request.get(h).headers["content-type"].startswith("text/html")]
    assert html and "sandbox" in page.request.get(html[0]).headers["content-security-policy"]
    # the dry run's previews (the e-mail it would send, the archive it would write), each a link
    previews = page.locator("#run-outputs ul.previews a")
    assert previews.count() == len(run["previews"]) > 0
    first = previews.first.get_attribute("href")
    assert first == f"/files/runs/{run_id}/previews/{run['previews'][0]}"
    assert page.request.get(first).status == 200
    # the graph is the plan's: every step of the policy, all in a state
    assert page.locator("#run-graph svg g.node").count() == len(run["steps"])
    assert page.locator('#run-graph svg g.node[data-step="mail"]').get_attribute("data-state") == "SUCCESS"
    # without a session the files are not served
    anonymous = page.context.browser.new_context(base_url=live.url)
    try:
        answer = anonymous.request.get(src, max_redirects=0)
        assert answer.status == 303 and "/login" in answer.headers["location"]
    finally:
        anonymous.close()


def test_resume_and_cancel_are_for_roles_that_may_run(start_server, page_of):
    live = start_server(scheduler=False)
    admin_token = live.token("root", "admin")
    admin = live.client(admin_token)
    failing = {
        "schema_version": 1,
        "id": "broken",
        "steps": [{"id": "boom", "type": "test.fail", "params": {"message": "it broke", "retryable": False}}],
    }
    approved(admin, failing)
    approved(admin, sleeper("long-nap", 30))
    failed_id = start(admin, "broken")
    assert live.wait_run(admin, failed_id)["status"] == "FAILED"

    viewer = page_of(live, live.token("vic", "viewer"))
    viewer.goto(f"/runs/{failed_id}")
    assert viewer.locator("#run-status").inner_text() == "FAILED"
    assert "it broke" in viewer.locator('#run-steps tr[data-step="boom"]').inner_text()
    assert viewer.get_by_role("button", name="Resume run").count() == 0
    sleeping_id = start(admin, "long-nap")
    viewer.goto(f"/runs/{sleeping_id}")
    assert viewer.locator("#run-status").inner_text() == "RUNNING"
    assert viewer.get_by_role("button", name="Cancel run").count() == 0
    # a viewer's own post (with the session's CSRF token) is refused for the role, on an HTML page
    csrf = viewer.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = viewer.request.post(f"/runs/{sleeping_id}/cancel", form={"csrf_token": csrf or ""}, max_redirects=0)
    assert forged.status == 403 and forged.headers["content-type"].startswith("text/html")
    assert "role viewer" in forged.text()

    author = page_of(live, live.token("ann", "author"))
    author.goto(f"/runs/{sleeping_id}")
    author.evaluate("window.__before_cancel = true")
    author.get_by_role("button", name="Cancel run").click()
    author.wait_for_url(f"**/runs/{sleeping_id}")
    author.locator('#run-status[data-status="CANCELLED"]').wait_for(timeout=20_000)
    assert live.wait_run(admin, sleeping_id)["status"] == "CANCELLED"
    # the cancelled run may be resumed by the author, from the same page
    author.get_by_role("button", name="Resume run").wait_for()

    author.goto(f"/runs/{failed_id}")
    author.get_by_role("button", name="Resume run").click()
    author.wait_for_url(f"**/runs/{failed_id}")
    author.locator('#run-status[data-status="FAILED"]').wait_for(timeout=20_000)
    assert live.wait_run(admin, failed_id)["attempt"] == 2
    author.reload()
    assert author.locator("#run-attempt").inner_text() == "2"
    assert "attempt 2" in author.locator("#run-summary").inner_text()  # the resume is listed


def test_a_post_without_the_sessions_csrf_token_is_refused(start_server, page_of):
    live = start_server(scheduler=False)
    token = live.token("root", "admin")
    api = live.client(token)
    approved(api, sleeper("nap", 30))
    run_id = start(api, "nap")
    page = page_of(live, token)
    answer = page.request.post(f"/runs/{run_id}/cancel", form={"csrf_token": "forged"}, max_redirects=0)
    assert answer.status == 403 and "CSRF" in answer.text()
    assert api.get(f"/runs/{run_id}").json()["status"] == "RUNNING"
    assert api.post(f"/runs/{run_id}/cancel").status_code == 202
    assert live.wait_run(api, run_id)["status"] == "CANCELLED"


def test_the_list_of_runs_filters_and_pages(start_server, page_of):
    live = start_server(scheduler=False)
    token = live.token("root", "admin")
    api = live.client(token)
    quick = {"schema_version": 1, "id": "quick", "steps": [{"id": "v", "type": "core.value", "params": {"value": 1}}]}
    other = {**quick, "id": "other"}
    approved(api, quick)
    approved(api, other)
    ids = []
    for policy_id, dry in (("quick", False), ("quick", False), ("other", False), ("quick", True), ("other", False)):
        ids.append(start(api, policy_id, dry_run=dry))
        assert live.wait_run(api, ids[-1])["status"] == "SUCCESS"
    newest_first = list(reversed(ids))

    page = page_of(live, token)
    page.goto("/runs?limit=2")
    seen: list[str] = []
    for _ in range(3):
        rows = page.locator("table.runs tbody tr td:first-child a")
        seen += [rows.nth(i).inner_text() for i in range(rows.count())]
        older = page.get_by_role("link", name="Older runs")
        if older.count() == 0:
            break
        older.click()
        page.wait_for_load_state()
    assert seen == newest_first
    assert page.get_by_role("link", name="Newest runs").count() == 1

    page.goto("/runs")
    page.get_by_label("Policy").fill("other")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/runs?policy=other*")
    rows = page.locator("table.runs tbody tr td:first-child a")
    assert [rows.nth(i).inner_text() for i in range(rows.count())] == [ids[4], ids[2]]
    assert page.get_by_label("Policy").input_value() == "other"  # the form keeps its filters

    page.goto("/runs?policy=quick&trigger=api")
    assert page.locator("table.runs tbody tr").count() == 3
    assert page.get_by_label("Trigger").input_value() == "api"
    page.get_by_label("Status").select_option("FAILED")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**status=FAILED*")
    assert page.locator("table.runs tbody").inner_text().strip() == "No runs."

    today = dt.datetime.now(dt.UTC).date()
    page.goto(f"/runs?since={today + dt.timedelta(days=1)}")
    assert page.locator("table.runs tbody").inner_text().strip() == "No runs."
    page.goto(f"/runs?since={today}&until={today}")  # until a day: the whole day
    assert page.locator("table.runs tbody tr").count() == 5
    assert page.get_by_label("Started on or after").input_value() == str(today)

    answer = page.goto("/runs?status=NOPE")
    assert answer is not None and answer.status == 400
    assert "NOPE" in page.get_by_role("alert").inner_text()
    assert page.get_by_role("button", name="Filter").is_visible()
