"""Quotas count per token (the actor) through the API, answered 429 with Retry-After; the CLI
works in workspace ``default`` unless ENGINE_WORKSPACE names another, which the API then sees."""

from __future__ import annotations

import json

from engine.config import EngineConfig
from tests.server.conftest import hello


def test_runs_per_hour_counts_per_token_and_answers_429_with_retry_after(start_server):
    live = start_server(scheduler=False, config=EngineConfig({"quotas": {"runs_per_hour": 2}}, None, {}))
    admin = live.as_role("admin", name="boss")
    digest = admin.post("/policies", content=json.dumps(hello())).json()["approval_hash"]
    admin.post("/policies/hello/approvals", json={"hash": digest})
    ann, bob = live.as_role("author", name="ann"), live.as_role("author", name="bob")
    assert [ann.post("/policies/hello/runs").status_code for _ in range(2)] == [202, 202]
    refused = ann.post("/policies/hello/runs")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    problem = refused.json()
    assert problem["type"] == "/problems/quota-exceeded" and problem["quota"] == "runs_per_hour"
    assert "ann" in problem["detail"] and problem["next_allowed_at"]
    assert bob.post("/policies/hello/runs").status_code == 202  # another token: its own count
    assert ann.post("/policies/hello/dry-run").status_code == 202  # dry runs count toward no quota


def test_the_cli_works_in_engine_workspace(start_server, cli, write_policy, tmp_path, database):
    live = start_server(scheduler=False)
    path = write_policy(hello("local"))
    env = {"ENGINE_STATE_DIR": str(live.root)}
    assert cli("run", str(path), "--dry-run", env=env).returncode == 0
    assert cli("run", str(path), "--dry-run", env={**env, "ENGINE_WORKSPACE": "acme"}).returncode == 0
    # its own SQLite file, or its own schema of the PostgreSQL database (no file)
    assert (live.root / "workspaces" / "acme" / "engine.db").exists() == (database == "sqlite")
    acme, default = live.as_role("viewer", "acme"), live.as_role("viewer")
    assert [r["policy_id"] for r in acme.get("/runs").json()["runs"]] == ["local"]
    assert [r["policy_id"] for r in default.get("/runs").json()["runs"]] == ["local"]
    assert acme.get("/runs").json()["runs"][0]["run_id"] != default.get("/runs").json()["runs"][0]["run_id"]
    listed = cli("runs", "--json", env={**env, "ENGINE_WORKSPACE": "acme"})
    assert len(json.loads(listed.stdout)["runs"]) == 1
    bad = cli("runs", env={**env, "ENGINE_WORKSPACE": "../etc"})
    assert bad.returncode == 2 and "ENGINE_WORKSPACE" in bad.stderr
