"""Schedules through the API (the seed's schedulers): created on a policy, with the next fires in
UTC and local time; fired by the server's scheduler under a faked clock; the execution history
shows runs and skipped slots with their reasons."""

from __future__ import annotations

import json
import time

from tests.server.conftest import hello


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_schedule_created_through_the_api_fires_and_shows_in_its_history(start_server):
    live = start_server()
    admin = live.as_role("admin")
    digest = admin.post("/policies", content=json.dumps(hello("tick"))).json()["approval_hash"]
    assert admin.post("/policies/tick/approvals", json={"hash": digest}).status_code == 201

    created = admin.post(
        "/schedules", json={"policy_id": "tick", "interval_minutes": 1, "timezone": "Asia/Tokyo", "catchup": "none"}
    )
    assert created.status_code == 201, created.text
    entry = created.json()
    assert entry["policy_id"] == "tick" and entry["enabled"] is True
    assert len(entry["next_fires"]) == 5
    first = entry["next_fires"][0]
    assert first["utc"].endswith("+00:00") and first["local"].endswith("+09:00")
    assert "last_run" in entry and "overdue" in entry
    # a new version differing only in schedule: no new approval needed
    versions = admin.get("/policies/tick/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["approval_hash"] == versions[1]["approval_hash"] and versions[1]["approved"] is True
    assert any(e["action"] == "policy.schedule_changed" for e in admin.get("/audit").json()["entries"])

    assert [s["policy_id"] for s in admin.get("/schedules").json()["schedules"]] == ["tick"]

    def seen():  # a new policy waits for its next slot: the one before is recorded as missed
        return [r for r in admin.get("/schedules/tick/runs").json()["runs"] if r["reason"] == "missed"]

    wait_for(seen)
    live.clock.advance(65)  # the next slot is due now for the server's scheduler

    def ran():
        runs = admin.get("/schedules/tick/runs").json()["runs"]
        return [r for r in runs if r["run_id"] and r["status"] == "SUCCESS"]

    (fired,) = wait_for(ran)[:1]
    run = admin.get(f"/runs/{fired['run_id']}").json()
    assert run["trigger"] == "schedule" and run["scheduled_for"] == fired["scheduled_for"]
    assert admin.get("/schedules/tick").json()["last_run"]["run_id"] == fired["run_id"]

    # revoke the approval: the next slot is skipped, and the history says why
    assert admin.delete(f"/policies/tick/approvals/{digest}").status_code == 200
    live.clock.advance(60)

    def skipped():
        runs = admin.get("/schedules/tick/runs").json()["runs"]
        return [r for r in runs if r["status"] == "SKIPPED" and r["reason"] == "not approved"]

    assert wait_for(skipped)


def test_schedule_changes_disable_and_delete(start_server):
    live = start_server(scheduler=False)
    author = live.as_role("author")
    author.post("/policies", content=json.dumps(hello("daily")))
    assert author.post("/schedules", json={"policy_id": "daily", "cron": "0 7 * * 1-5"}).status_code == 201
    again = author.post("/schedules", json={"policy_id": "daily", "cron": "0 8 * * *"})
    assert again.status_code == 409 and "PUT /api/v1/schedules/daily" in again.json()["detail"]

    changed = author.put("/schedules/daily", json={"interval_hours": 6})
    assert changed.status_code == 200
    assert changed.json()["schedule"]["interval_minutes"] == 360 and "cron" not in changed.json()["schedule"]
    disabled = author.put("/schedules/daily", json={"enabled": False}).json()
    assert disabled["enabled"] is False
    assert author.get("/policies/daily").json()["schedule"].endswith("disabled")

    bad = author.put("/schedules/daily", json={"cron": "61 * * * *"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["pointer"] == "/cron"
    two = author.put("/schedules/daily", json={"cron": "0 7 * * *", "window_time": "07:00"})
    assert two.status_code == 422

    assert author.delete("/schedules/daily").status_code == 200
    assert author.get("/schedules/daily").status_code == 404
    assert author.get("/schedules").json()["schedules"] == []
    assert "schedule" not in author.get("/policies/daily").json()["document"]
