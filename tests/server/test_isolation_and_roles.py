"""Workspaces are isolated (another workspace's resource is 404, never 403), roles are enforced
(a viewer cannot write: 403), and missing, invalid, expired or revoked tokens get 401."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from engine.artifacts import ArtifactStore
from tests.server.conftest import hello

SCHEDULE = {"cron": "0 7 * * *", "timezone": "Europe/Berlin"}


@pytest.fixture
def two_workspaces(start_server):
    """Workspace ``b`` with a scheduled policy, a finished dry run with a preview and an artifact;
    an admin token of workspace ``a`` to look for them."""
    live = start_server()
    b = live.as_role("admin", "b")
    created = b.post("/policies", content=json.dumps(hello("secret", schedule=SCHEDULE)))
    assert created.status_code == 201, created.text
    digest = created.json()["approval_hash"]
    run_id = b.post("/policies/secret/dry-run").json()["run_id"]
    run = live.wait_run(b, run_id)
    assert run["status"] == "SUCCESS"
    preview_dir = live.root / "workspaces" / "b" / "runs" / run_id / "preview"
    preview_dir.mkdir(parents=True)
    (preview_dir / "mail.eml").write_text("Subject: secret\n\nbody\n")
    ref = ArtifactStore(live.root / "workspaces" / "b" / "artifacts").put_bytes(b"%PDF-1.7 secret", "application/pdf")
    a = live.as_role("admin", "a")
    return live, a, b, {"run": run_id, "hash": digest, "sha": ref.sha256}


ROUTES = [
    ("GET", "/policies/secret", None),
    ("PUT", "/policies/secret", hello("secret")),
    ("DELETE", "/policies/secret", None),
    ("GET", "/policies/secret/versions", None),
    ("GET", "/policies/secret/diff", None),
    ("POST", "/policies/secret/plan", None),
    ("POST", "/policies/secret/dry-run", None),
    ("POST", "/policies/secret/runs", {"params": {}}),
    ("POST", "/policies/secret/approvals", {"hash": "{hash}"}),
    ("DELETE", "/policies/secret/approvals/{hash}", None),
    ("GET", "/runs/{run}", None),
    ("POST", "/runs/{run}/resume", None),
    ("POST", "/runs/{run}/cancel", None),
    ("GET", "/runs/{run}/events", None),
    ("GET", "/runs/{run}/logs", None),
    ("GET", "/runs/{run}/previews/mail.eml", None),
    ("GET", "/artifacts/{sha}", None),
    ("POST", "/schedules", {"policy_id": "secret", "cron": "0 8 * * *"}),
    ("GET", "/schedules/secret", None),
    ("PUT", "/schedules/secret", {"enabled": False}),
    ("DELETE", "/schedules/secret", None),
    ("GET", "/schedules/secret/runs", None),
]


def _fill(value, ids):
    text = json.dumps(value) if value is not None else None
    for key, real in ids.items():
        text = text.replace("{" + key + "}", real) if text else text
    return json.loads(text) if text else None


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_another_workspaces_resource_is_404_never_403(two_workspaces, method, path, body):
    live, a, b, ids = two_workspaces
    url = path.format(**ids)
    response = a.request(method, url, json=_fill(body, ids))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
    # the owner sees it (the same request is not a 404 in workspace b)
    if method == "GET":
        assert b.request(method, url).status_code == 200


def test_lists_show_only_the_callers_workspace_and_ids_are_per_workspace(two_workspaces):
    live, a, b, ids = two_workspaces
    assert a.get("/policies").json()["policies"] == []
    assert a.get("/runs").json()["runs"] == []
    assert a.get("/schedules").json()["schedules"] == []
    assert a.get("/approvals").json()["approvals"] == []
    assert all(e["subject"] != "secret" for e in a.get("/audit").json()["entries"])
    assert [p["id"] for p in b.get("/policies").json()["policies"]] == ["secret"]
    # the same id in workspace a is another policy
    mine = a.post("/policies", content=json.dumps(hello("secret", value="mine")))
    assert mine.status_code == 201 and mine.json()["version"] == 1
    assert b.get("/policies/secret").json()["document"]["steps"][0]["params"]["value"] == "hi"


WRITES = [
    ("POST", "/policies", hello("new")),
    ("PUT", "/policies/mine", hello("mine", value=2)),
    ("DELETE", "/policies/mine", None),
    ("POST", "/policies/mine/dry-run", None),
    ("POST", "/policies/mine/runs", None),
    ("POST", "/policies/mine/approvals", {"hash": "{hash}"}),
    ("DELETE", "/policies/mine/approvals/{hash}", None),
    ("POST", "/runs/{run}/resume", None),
    ("POST", "/runs/{run}/cancel", None),
    ("POST", "/schedules", {"policy_id": "mine", "cron": "0 8 * * *"}),
    ("PUT", "/schedules/mine", {"enabled": False}),
    ("DELETE", "/schedules/mine", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_a_viewer_cannot_write(start_server, method, path, body):
    live = start_server()
    admin = live.as_role("admin")
    created = admin.post("/policies", content=json.dumps(hello("mine", schedule=SCHEDULE))).json()
    run_id = admin.post("/policies/mine/dry-run").json()["run_id"]
    live.wait_run(admin, run_id)
    viewer = live.as_role("viewer")
    ids = {"hash": created["approval_hash"], "run": run_id}
    kwargs = {"content": json.dumps(body)} if path == "/policies" or method == "PUT" and "policies" in path else {}
    if not kwargs and body is not None:
        kwargs = {"json": _fill(body, ids)}
    response = viewer.request(method, path.format(**ids), **kwargs)
    assert response.status_code == 403, response.text
    assert "role viewer" in response.json()["detail"]
    assert viewer.get("/policies/mine").status_code == 200  # reading is allowed


def test_an_author_cannot_approve_and_an_approver_cannot_write(start_server):
    live = start_server()
    author, approver = live.as_role("author"), live.as_role("approver")
    digest = author.post("/policies", content=json.dumps(hello())).json()["approval_hash"]
    assert author.post("/policies/hello/approvals", json={"hash": digest}).status_code == 403
    assert approver.put("/policies/hello", content=json.dumps(hello(value=3))).status_code == 403
    assert approver.post("/policies/hello/runs").status_code == 403
    assert approver.post("/policies/hello/approvals", json={"hash": digest}).status_code == 201


@pytest.mark.parametrize("case", ["missing", "invalid", "expired", "revoked"])
def test_bad_tokens_get_401_with_www_authenticate(start_server, case):
    live = start_server()
    if case == "missing":
        client = live.client(None)
    elif case == "invalid":
        client = live.client("eng_not-a-token")
    elif case == "expired":
        client = live.client(live.token("old", "admin", expires=dt.timedelta(microseconds=1)))
    else:
        token = live.token("gone", "admin")
        from engine.governance import tokens
        from engine.store import Store
        from engine.workspaces import DEFAULT, db_url_for

        store = Store(live.root, db_url_for(DEFAULT))
        tokens.revoke(store.engine, "gone", "test-admin")
        store.close()
        client = live.client(token)
    response = client.get("/policies")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 401 and "Traceback" not in response.text
    if case in ("expired", "revoked"):
        assert case in problem["detail"]
