"""/api/v1/policies: validation with every problem located, versions, diff, archive, plan, the
file-backed rule, problem+json errors, the 2 MiB body limit and the OpenAPI document."""

from __future__ import annotations

import json
import time

from tests.server.conftest import hello


def test_an_invalid_policy_is_422_with_every_problem_located_and_nothing_recorded(start_server):
    live = start_server()
    author = live.as_role("author")
    text = (
        '{\n  "schema_version": 1,\n  "id": "bad",\n  "steps": [\n    {"id": "a", "type": "core.valu"},\n'
        '    {"id": "b", "type": "core.value", "depends_on": ["zz"], "params": {"value": 1}}\n  ]\n}'
    )
    response = author.post("/policies", content=text)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/invalid-policy" and problem["status"] == 422 and problem["title"]
    by_pointer = {e["pointer"]: e for e in problem["errors"]}
    assert by_pointer["/steps/0/type"]["line"] == 5 and "core.valu" in by_pointer["/steps/0/type"]["message"]
    assert any(p.startswith("/steps/1/depends_on") and e["line"] == 6 for p, e in by_pointer.items())
    assert all({"pointer", "line", "column", "message"} <= e.keys() for e in problem["errors"])
    assert author.get("/policies/bad").status_code == 404  # recorded nowhere

    syntax = author.post("/policies", content='{"id": "x",\n  "steps": [}')
    assert syntax.status_code == 422 and syntax.json()["errors"][0]["line"] == 2

    checked = author.post("/policies/validate", content=text).json()
    assert checked["valid"] is False and len(checked["problems"]) == len(problem["errors"])
    ok = author.post("/policies/validate", content=json.dumps(hello())).json()
    assert ok == {**ok, "valid": True, "id": "hello", "problems": []}
    assert author.get("/policies").json()["policies"] == []  # validate records nothing


def test_versions_diff_get_and_archive(start_server):
    live = start_server(scheduler=False)
    author = live.as_role("author")
    first = author.post("/policies", content=json.dumps(hello(value=1)))
    assert first.status_code == 201
    assert author.post("/policies", content=json.dumps(hello(value=1))).status_code == 409  # exists: PUT
    second = author.put("/policies/hello", content=json.dumps(hello(value=2)))
    assert second.status_code == 200 and second.json()["version"] == 2 and second.json()["new"] is True
    wrong_id = author.put("/policies/hello", content=json.dumps(hello("other")))
    assert wrong_id.status_code == 422 and wrong_id.json()["errors"][0]["pointer"] == "/id"

    listed = author.get("/policies").json()["policies"]
    assert [(p["id"], p["version"], p["approved"], p["source"]) for p in listed] == [("hello", 2, False, "api")]
    got = author.get("/policies/hello").json()
    assert got["version"] == 2 and got["document"]["steps"][0]["params"]["value"] == 2
    assert author.get("/policies/hello", params={"version": 1}).json()["document"]["steps"][0]["params"]["value"] == 1
    assert author.get("/policies/hello", params={"version": 9}).status_code == 404
    versions = author.get("/policies/hello/versions").json()["versions"]
    assert [(v["version"], v["current"], v["created_by"]) for v in versions] == [
        (1, False, "author-default"),
        (2, True, "author-default"),
    ]
    diff = author.get("/policies/hello/diff", params={"from": 1, "to": 2}).json()
    assert diff["from"] == 1 and diff["to"] == 2
    assert '-        "value": 1' in diff["diff"] and '+        "value": 2' in diff["diff"]

    plan = author.post("/policies/hello/plan").json()
    assert plan["layers"] == [["s1"]] and plan["approval"]["hash"] == second.json()["approval_hash"]
    assert plan["approval"]["approved"] is False

    gone = author.delete("/policies/hello")
    assert gone.status_code == 200 and gone.json()["archived"] is True
    assert author.get("/policies").json()["policies"] == []
    assert author.get("/policies/hello").status_code == 404
    assert any(e["action"] == "policy.archived" for e in author.get("/audit").json()["entries"])
    back = author.post("/policies", content=json.dumps(hello(value=3)))  # the id again: restored
    assert back.status_code == 201 and back.json()["version"] == 3
    assert [v["version"] for v in author.get("/policies/hello/versions").json()["versions"]] == [1, 2, 3]


def test_a_file_backed_policy_is_edited_in_its_file_not_through_the_api(start_server, tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "daily.json").write_text(json.dumps(hello("daily", value=1)))
    live = start_server(folders=[folder], scheduler=False)
    author = live.as_role("author")

    def listed():
        return author.get("/policies").json()["policies"]

    deadline = time.monotonic() + 10
    while not listed() and time.monotonic() < deadline:
        time.sleep(0.1)
    (entry,) = listed()
    assert entry["id"] == "daily" and entry["source"] == "file" and entry["path"].endswith("daily.json")

    for response in (
        author.put("/policies/daily", content=json.dumps(hello("daily", value=2))),
        author.delete("/policies/daily"),
        author.post("/policies", content=json.dumps(hello("daily", value=2))),
        author.post("/schedules", json={"policy_id": "daily", "cron": "0 7 * * *"}),
    ):
        assert response.status_code == 409, response.text
        assert "edit that file" in response.json()["detail"] and "daily.json" in response.json()["detail"]

    (folder / "daily.json").write_text(json.dumps(hello("daily", value=5)))  # the file changes: synced
    deadline = time.monotonic() + 10
    while author.get("/policies/daily").json()["version"] != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert author.get("/policies/daily").json()["document"]["steps"][0]["params"]["value"] == 5


def test_bodies_over_2_mib_are_413_and_errors_are_problem_json(start_server):
    live = start_server(scheduler=False)
    author = live.as_role("author")
    big = json.dumps({**hello(), "description": "x" * (2 * 1024 * 1024)})
    response = author.post("/policies", content=big)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 413

    def chunks():
        for _ in range(3):
            yield b"x" * (1024 * 1024)

    streamed = author.post("/policies/validate", content=chunks())  # no Content-Length: counted
    assert streamed.status_code == 413

    missing = author.get("/runs/nope")
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/not-found"
    bad_query = author.get("/runs", params={"limit": 0})
    assert bad_query.status_code == 422 and bad_query.headers["content-type"] == "application/problem+json"
    unknown = author.get("/no-such-route")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    for r in (response, missing, bad_query, unknown):
        assert "Traceback" not in r.text and {"type", "title", "status", "detail"} <= r.json().keys()


def test_the_openapi_document_and_docs_page(start_server):
    live = start_server(scheduler=False)
    import httpx

    document = httpx.get(f"{live.url}/api/v1/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/v1/policies",
        "/api/v1/policies/{policy_id}/runs",
        "/api/v1/runs/{run_id}/events",
        "/api/v1/schedules/{policy_id}/runs",
        "/api/v1/audit/verify",
        "/api/v1/artifacts/{sha256}",
    ):
        assert path in paths, path
    assert "ApprovalIn" in document["components"]["schemas"]
    assert httpx.get(f"{live.url}/api/docs").status_code == 200


def test_a_version_made_current_again_is_what_the_next_version_follows(start_server):
    live = start_server(scheduler=False)
    admin = live.as_role("admin")
    first = admin.post("/policies", content=json.dumps(hello(value=1))).json()
    admin.post("/policies/hello/approvals", json={"hash": first["approval_hash"]})
    admin.put("/policies/hello", content=json.dumps(hello(value=2, schedule={"cron": "0 9 * * *"})))
    back = admin.put("/policies/hello", content=json.dumps(hello(value=1))).json()
    assert back["version"] == 1 and back["approved"] is True
    assert admin.get("/policies/hello").json()["version"] == 1  # the current version again
    restored = [e for e in admin.get("/audit").json()["entries"] if e["action"] == "policy.version_restored"]
    assert restored[-1]["details"]["from"] == 2 and restored[-1]["details"]["to"] == 1

    scheduled = admin.post("/schedules", json={"policy_id": "hello", "cron": "0 7 * * *"})
    assert scheduled.status_code == 201 and scheduled.json()["version"] == 3
    change = [e for e in admin.get("/audit").json()["entries"] if e["action"] == "policy.schedule_changed"][-1]
    assert change["details"]["from"] is None and change["details"]["needs_approval"] is False  # follows v1
    assert admin.get("/policies/hello").json()["approved"] is True
