"""One rule, one place: the CLI and the REST API refuse an unapproved version with the same
rule (the governance gate), naming the same approval hash and the same command to approve it."""

from __future__ import annotations

import json

from engine.config import EngineConfig
from tests.server.conftest import hello


def test_the_cli_and_the_api_refuse_the_same_unapproved_version_alike(start_server, cli, write_policy):
    live = start_server(scheduler=False, config=EngineConfig({"governance": {"require_approval": True}}, None, {}))
    author = live.as_role("author")
    created = author.post("/policies", content=json.dumps(hello())).json()
    path = write_policy(hello())
    env = {"ENGINE_STATE_DIR": str(live.root), "ENGINE_GOVERNANCE_REQUIRE_APPROVAL": "true"}

    by_cli = cli("run", str(path), env=env)
    by_api = author.post("/policies/hello/runs")

    command = f"engine approve hello --hash {created['approval_hash']}"
    assert by_cli.returncode == 4 and command in by_cli.stderr.replace("\n", "")
    assert by_api.status_code == 409 and command in by_api.json()["detail"]
    refusals = [e for e in author.get("/audit").json()["entries"] if e["action"] == "run.refused"]
    assert [e["actor"] for e in refusals] == [refusals[0]["actor"], "author-default"]
    assert {e["details"]["approval_hash"] for e in refusals} == {created["approval_hash"]}
