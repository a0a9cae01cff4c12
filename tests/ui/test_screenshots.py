"""The screenshots of docs/ui.md, made by this test: realistic state built through the REST API
(an admin creates a policy in two versions, approves it, runs it), then an approver's browser
opens the side-by-side diff of v1 and v2 and the finished run's page, checks that they show what
the guide says, and saves them to docs/images/ui-policy-diff.png and docs/images/ui-run.png."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

ORDERS_V1: dict[str, Any] = {
    "schema_version": 1,
    "id": "daily-orders",
    "title": "Daily orders summary",
    "params": {"min_orders": {"type": "integer", "default": 100}},
    "steps": [
        {
            "id": "orders",
            "type": "core.value",
            "params": {"value": {"region": "emea", "orders": 118, "refunds": 3}},
        },
        {
            "id": "settle",
            "type": "test.sleep",
            "params": {"seconds": 1, "value": {"waited_s": 1}},
            "depends_on": ["orders"],
        },
        {
            "id": "net",
            "type": "core.value",
            "params": {"value": {"net": {"template": "{{ orders.orders - orders.refunds }}"}}},
            "depends_on": ["orders"],
        },
        {
            "id": "summary",
            "type": "core.value",
            "params": {
                "value": {
                    "text": {"template": "{{ net.net }} net orders in {{ orders.region | upper }}"},
                    "enough": {"template": "{{ orders.orders >= params.min_orders }}"},
                }
            },
            "depends_on": ["net", "settle"],
        },
    ],
}


def second_version() -> dict[str, Any]:
    doc = copy.deepcopy(ORDERS_V1)
    doc["params"]["min_orders"]["default"] = 110
    return doc


def test_screenshots_of_a_policy_diff_and_a_finished_run(start_server, page_of):
    live = start_server(scheduler=False)
    admin = live.as_role("admin", name="ann")
    assert admin.post("/policies", content=json.dumps(ORDERS_V1)).status_code == 201
    updated = admin.put("/policies/daily-orders", content=json.dumps(second_version()))
    assert updated.status_code == 200, updated.text
    digest = updated.json()["approval_hash"]
    approved = admin.post("/policies/daily-orders/approvals", json={"hash": digest, "note": "checked the threshold"})
    assert approved.status_code == 201, approved.text
    started = admin.post("/policies/daily-orders/runs", json={"params": {}})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    run = live.wait_run(admin, run_id, timeout=30)
    assert run["status"] == "SUCCESS", run

    page = page_of(live, live.token("bob", "approver"))
    DOCS_IMAGES.mkdir(exist_ok=True)

    # the side-by-side diff of v1 and v2 (the address the Compare form leads to)
    page.goto("/policies/daily-orders/diff?from=1&to=2")
    assert page.locator("#h-diff").inner_text() == "v1 → v2"
    removed = page.locator("#diff td.del").all_inner_texts()
    added = page.locator("#diff td.add").all_inner_texts()
    assert len(removed) == len(added) == 1  # one changed line: the threshold's default
    assert removed[0].startswith("−") and removed[0][1:].strip() == '"default": 100,'
    assert added[0].startswith("+") and added[0][1:].strip() == '"default": 110,'
    assert page.locator("#approval-state").inner_text().startswith("approved by ann")
    assert page.locator("svg.graph g.node").count() == 4
    page.screenshot(path=str(DOCS_IMAGES / "ui-policy-diff.png"), full_page=True)

    # the finished run: SUCCESS, a step table, the graph coloured by state, the Gantt
    page.goto(f"/runs/{run_id}")
    status = page.locator("#run-status")
    assert status.inner_text() == "SUCCESS" and status.get_attribute("data-status") == "SUCCESS"
    nodes = page.locator("#run-graph svg g.node")
    assert nodes.count() == 4
    assert {nodes.nth(i).get_attribute("data-state") for i in range(4)} == {"SUCCESS"}
    assert page.locator("#run-steps tr[data-state=SUCCESS]").count() == 4
    assert page.locator("#run-gantt svg.gantt g[data-step]").count() == 4
    assert page.get_by_role("button", name="Cancel run").count() == 0  # an approver does not run
    assert "approved by ann" in page.locator("#run-summary").inner_text()
    page.screenshot(path=str(DOCS_IMAGES / "ui-run.png"), full_page=True)

    for name in ("ui-policy-diff.png", "ui-run.png"):
        png = (DOCS_IMAGES / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20], "big") == 1280  # the width, from the IHDR chunk
