"""The MCP server over its two transports: streamable HTTP at /mcp of a real ``engine server``
(bearer tokens, the seed's end-to-end gate with a real SMTP sink), and stdio (``engine mcp``
started by the SDK's client)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from engine.config import EngineConfig
from tests.conftest import ROOT
from tests.mcp.test_tools import TOOLS
from tests.server.conftest import start_server  # noqa: F401 - the fixture
from tests.smtpserver import *  # noqa: F403

EXAMPLES = ROOT / "policies" / "examples"


def report_policy(archive) -> dict:
    """fetch.file -> transform -> report.build -> render.pdf -> send.email (the flagship)."""
    doc = json.loads((EXAMPLES / "sales_report.json").read_text())
    doc.pop("$schema", None)
    doc["steps"][0]["params"]["path"] = str(EXAMPLES / "data" / "sales.csv")
    doc["params"]["archive"]["default"] = str(archive)
    return doc


async def _with_client(url: str, token: str | None, body):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return await body(client)


def test_the_seed_gate_through_mcp_over_http(start_server, smtp_server, tmp_path):  # noqa: F811
    config = EngineConfig({"smtp": {"host": smtp_server.host, "port": smtp_server.port, "security": "none"}}, None, {})
    live = start_server(config=config, scheduler=False)
    agent_token = live.token("claude", "author")
    approver = live.as_role("approver", name="dora")
    url = f"{live.url}/mcp"

    async def create_and_try(client):
        created = await client.call_tool("create_policy", {"document": report_policy(tmp_path / "archive")})
        assert not created.is_error, created.content[0].text
        refused = await client.call_tool("run_pipeline", {"id": "sales-report"})
        assert refused.is_error and "not approved" in refused.content[0].text
        return created.structured_content["approval_hash"]

    digest = asyncio.run(_with_client(url, agent_token, create_and_try))
    assert approver.post("/policies/sales-report/approvals", json={"hash": digest}).status_code == 201

    async def run_twice(client):
        first = await client.call_tool("run_pipeline", {"id": "sales-report", "wait_s": 120})
        assert not first.is_error, first.content[0].text
        assert first.structured_content["status"] == "SUCCESS" and first.structured_content["finished"] is True
        history = await client.call_tool("get_pipeline_history", {"id": "sales-report"})
        assert [r["run_id"] for r in history.structured_content["runs"]] == [first.structured_content["run_id"]]
        again = await client.call_tool("run_pipeline", {"id": "sales-report", "wait_s": 120})
        assert again.structured_content["status"] == "SUCCESS"
        slot = first.structured_content["scheduled_for"]
        assert slot and again.structured_content["scheduled_for"] == slot  # the latest slot of its schedule
        return first.structured_content["run_id"], again.structured_content["run_id"]

    first_run, second_run = asyncio.run(_with_client(url, agent_token, run_twice))
    (received,) = smtp_server.handler.messages  # the second run for the same slot sent nothing new
    assert any(p.get_content_type() == "application/pdf" for p in received.message.iter_attachments())
    deliveries = approver.get("/deliveries", params={"policy": "sales-report"}).json()["deliveries"]
    by_run = {}
    for d in deliveries:
        if d["channel"] == "email":  # (the archive's file names carry the run id: each run writes its own)
            by_run.setdefault(d["run_id"], set()).add(d["status"])
    assert by_run[first_run] == {"sent"} and by_run[second_run] == {"duplicate"}
    run = approver.get(f"/runs/{first_run}").json()
    assert run["actor"] == "claude" and run["approval"]["approved_by"] == "dora"


def test_mcp_over_http_needs_a_token_and_a_viewer_lists_read_only_tools(start_server):  # noqa: F811
    live = start_server(scheduler=False)
    response = httpx.post(
        f"{live.url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"

    async def names(client):
        return {t.name for t in (await client.list_tools()).tools}

    viewer = asyncio.run(_with_client(f"{live.url}/mcp", live.token("vic", "viewer"), names))
    author = asyncio.run(_with_client(f"{live.url}/mcp", live.token("ann", "author"), names))
    assert author == TOOLS and viewer < TOOLS and "run_pipeline" not in viewer and "list_policies" in viewer

    async def other_workspace(client):
        result = await client.call_tool("get_policy", {"id": "hello"})
        return result.is_error, result.content[0].text

    admin_a = live.as_role("admin", "a")
    admin_a.post(
        "/policies",
        content=json.dumps(
            {"schema_version": 1, "id": "hello", "steps": [{"id": "s", "type": "core.value", "params": {"value": 1}}]}
        ),
    )
    failed, text = asyncio.run(_with_client(f"{live.url}/mcp", live.token("bea", "admin", "b"), other_workspace))
    assert failed and "no policy 'hello'" in text


def test_engine_mcp_over_stdio_lists_the_tools(tmp_path):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "engine", "mcp"],
        env={"ENGINE_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT), "ENGINE_ACTOR": "desk"},
    )

    async def body():
        async with Client(params) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            created = await client.call_tool(
                "create_policy",
                {
                    "document": {
                        "schema_version": 1,
                        "id": "x",
                        "steps": [{"id": "s", "type": "core.value", "params": {"value": 1}}],
                    }
                },
            )
            return names, created.structured_content

    names, created = asyncio.run(body())
    assert names == TOOLS and created["version"] == 1
    from engine.governance import registry
    from engine.store import Store

    store = Store(tmp_path / "state")
    try:
        version = registry.get_version(store.engine, "x")
        assert version.created_by == "mcp:desk" and version.source == "mcp"
    finally:
        store.close()
    assert os.path.exists(tmp_path / "state" / "logs" / "engine.log")
