"""/api/v1/runs: cursor pagination and filters, at most N runs at once, cancel and resume, the
previews of a dry run, logs, and the event stream of a finished run."""

from __future__ import annotations

import json
import time

from tests.server.conftest import hello, sse_events
from tests.stepkit import Concurrency


def approved(client, doc):
    digest = client.post("/policies", content=json.dumps(doc)).json()["approval_hash"]
    assert client.post(f"/policies/{doc['id']}/approvals", json={"hash": digest}).status_code == 201


def sleeper(policy_id="slow", seconds=2.0):
    return {
        "schema_version": 1,
        "id": policy_id,
        "steps": [
            {"id": "a", "type": "core.value", "params": {"value": 1}},
            {"id": "b", "type": "test.sleep", "params": {"seconds": seconds}, "depends_on": ["a"]},
        ],
    }


def step_status(client, run_id, step):
    return {s["id"]: s["status"] for s in client.get(f"/runs/{run_id}").json()["steps"]}[step]


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_runs_are_listed_newest_first_a_page_at_a_time(start_server):
    live = start_server(scheduler=False)
    admin = live.as_role("admin")
    admin.post("/policies", content=json.dumps(hello("one")))
    admin.post("/policies", content=json.dumps(hello("two")))
    ids = []
    for i in range(7):
        run_id = admin.post(f"/policies/{'one' if i % 2 else 'two'}/dry-run").json()["run_id"]
        live.wait_run(admin, run_id)
        ids.append(run_id)
    seen, cursor, pages = [], None, 0
    while True:
        page = admin.get("/runs", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [r["run_id"] for r in page["runs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(ids))
    only_one = admin.get("/runs", params={"policy": "one"}).json()["runs"]
    assert {r["policy_id"] for r in only_one} == {"one"} and len(only_one) == 3
    assert len(admin.get("/runs", params={"status": "SUCCESS", "trigger": "api"}).json()["runs"]) == 7
    assert admin.get("/runs", params={"status": "FAILED"}).json()["runs"] == []
    third = admin.get(f"/runs/{ids[2]}").json()["started_at"]  # since/until take any ISO 8601 offset
    import datetime as dt

    moment = dt.datetime.fromisoformat(third)
    as_z = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    in_tokyo = moment.astimezone(dt.timezone(dt.timedelta(hours=9))).isoformat()
    for since in (as_z, in_tokyo):
        assert [r["run_id"] for r in admin.get("/runs", params={"since": since}).json()["runs"]] == ids[:1:-1]
    assert len(admin.get("/runs", params={"until": as_z}).json()["runs"]) == 2
    assert admin.get("/runs", params={"since": "yesterday"}).status_code == 400
    assert admin.get("/runs", params={"cursor": "garbage"}).status_code == 400
    assert admin.get("/runs", params={"status": "NOPE"}).status_code == 400
    first = admin.get("/runs", params={"limit": 1}).json()["runs"][0]
    assert {"run_id", "policy_id", "status", "trigger", "dry_run", "started_at", "finished_at", "actor"} <= first.keys()


def test_at_most_n_runs_execute_at_once(start_server):
    live = start_server(scheduler=False, max_runs=1)
    admin = live.as_role("admin")
    approved(admin, sleeper(seconds=0.5))
    Concurrency.reset()
    run_ids = [admin.post("/policies/slow/runs").json()["run_id"] for _ in range(3)]
    finished = [live.wait_run(admin, r) for r in run_ids]
    assert [r["status"] for r in finished] == ["SUCCESS"] * 3
    assert Concurrency.peak == 1


def test_cancel_then_resume_keeps_what_succeeded(start_server):
    live = start_server(scheduler=False)
    admin = live.as_role("admin")
    approved(admin, sleeper(seconds=1.5))
    run_id = admin.post("/policies/slow/runs").json()["run_id"]
    wait_until(lambda: step_status(admin, run_id, "b") == "RUNNING")
    cancelled = admin.post(f"/runs/{run_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["cancelling"] is True
    run = live.wait_run(admin, run_id)
    assert run["status"] == "CANCELLED" and "cancelled by admin-default" in (run["error"] or "")
    assert admin.post(f"/runs/{run_id}/cancel").status_code == 409  # not running any more

    resumed = admin.post(f"/runs/{run_id[:12]}/resume")  # a unique prefix names the run
    assert resumed.status_code == 202 and resumed.json()["attempt"] == 2
    assert resumed.json()["run_id"] == run_id and resumed.json()["policy_id"] == "slow"
    run = live.wait_run(admin, run_id)
    assert run["status"] == "SUCCESS" and run["attempt"] == 2
    steps = {s["id"]: s for s in run["steps"]}
    assert steps["a"]["kept"] is True and steps["b"]["run_attempt"] == 2
    again = admin.post(f"/runs/{run_id}/resume")
    assert again.status_code == 409 and "already succeeded" in again.json()["detail"]


def test_a_dry_runs_previews_logs_and_events(start_server):
    live = start_server(scheduler=False)
    admin = live.as_role("admin")
    doc = {
        "schema_version": 1,
        "id": "mailer",
        "steps": [
            {
                "id": "mail",
                "type": "send.email",
                "params": {
                    "from": "reports@example.com",
                    "to": ["team@example.com"],
                    "subject": "Numbers",
                    "text": "Hello team",
                    "allowed_domains": ["example.com"],
                },
            }
        ],
    }
    assert admin.post("/policies", content=json.dumps(doc)).status_code == 201
    accepted = admin.post("/policies/mailer/dry-run")
    assert accepted.status_code == 202 and accepted.json()["dry_run"] is True
    run_id = accepted.json()["run_id"]
    run = live.wait_run(admin, run_id)
    assert run["status"] == "SUCCESS" and run["dry_run"] is True
    assert run.keys() >= {"run_id", "steps", "preview_dir", "approval", "actor"}  # engine show --json, and:
    eml = [name for name in run["previews"] if name.endswith(".eml")]
    assert eml, run["previews"]
    message = admin.get(f"/runs/{run_id}/previews/{eml[0]}")
    assert message.status_code == 200 and message.headers["content-type"].startswith("message/rfc822")
    assert b"Subject: Numbers" in message.content and b"team@example.com" in message.content
    assert admin.get(f"/runs/{run_id}/previews/..%2Fengine.db").status_code == 404
    assert admin.get(f"/runs/{run_id}/previews/nope.eml").status_code == 404

    logs = admin.get(f"/runs/{run_id}/logs").json()["events"]
    assert {"run.finished"} <= {e["event"] for e in logs}

    events = sse_events(admin, f"/runs/{run_id[:14]}/events")  # a finished run: its state, then the end
    assert [name for name, _ in events] == ["snapshot", "end"]
    assert events[0][1]["steps"]["mail"]["status"] == "SUCCESS" and events[1][1]["run_id"] == run_id
