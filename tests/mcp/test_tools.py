"""Every MCP tool and resource through the SDK's client (in-process), outputs checked against
their schemas; and the refusals an agent meets, each saying why and what a person must do."""

from __future__ import annotations

import base64
import json

from engine.config import EngineConfig
from engine.governance import approval
from tests.conftest import ROOT
from tests.mcp.conftest import call, document_text, hello, text_of

TOOLS = {
    "list_step_types",
    "get_policy_schema",
    "validate_policy",
    "create_policy",
    "update_policy",
    "get_policy",
    "list_policies",
    "plan_policy",
    "dry_run",
    "preview_report",
    "run_pipeline",
    "get_run",
    "get_pipeline_history",
    "update_policy_schedule",
    "get_schedule_status",
    "request_approval",
}
READ_ONLY = {
    "list_step_types",
    "get_policy_schema",
    "validate_policy",
    "get_policy",
    "list_policies",
    "plan_policy",
    "get_run",
    "get_pipeline_history",
    "get_schedule_status",
}


def mailer() -> dict:
    return {
        "schema_version": 1,
        "id": "mailer",
        "steps": [
            {"id": "note", "type": "core.value", "params": {"value": "numbers"}},
            {
                "id": "mail",
                "type": "send.email",
                "depends_on": ["note"],
                "params": {
                    "from": "reports@example.com",
                    "to": ["team@example.com"],
                    "subject": "Numbers",
                    "text": "Hello team",
                    "allowed_domains": ["example.com"],
                },
            },
        ],
    }


def test_the_tools_their_annotations_and_output_schemas(agent):
    async def body(client):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for name, t in tools.items():
            assert t.output_schema is not None, name
            assert t.annotations is not None and t.annotations.read_only_hint == (name in READ_ONLY), name
            assert t.annotations.destructive_hint is not None and t.annotations.idempotent_hint is not None
        assert tools["run_pipeline"].annotations.destructive_hint is True

        types = await call(client, "list_step_types")
        assert {"core.value", "send.email", "render.pdf"} <= {s["type"] for s in types["steps"]}
        schema = await call(client, "get_policy_schema")
        assert schema["schema"]["$schema"].startswith("https://json-schema.org/")
        return True

    assert agent.run(body)


def test_author_check_plan_record_and_read(agent):
    async def body(client):
        bad = hello(steps=None)
        bad["steps"] = [{"id": "a", "type": "core.valu"}]
        checked = await call(client, "validate_policy", {"document": document_text(bad)})
        assert checked["valid"] is False
        (problem,) = [p for p in checked["problems"] if p["pointer"] == "/steps/0/type"]
        assert problem["line"] is not None and "core.valu" in problem["message"]

        refused = await call(client, "create_policy", {"document": document_text(bad)})
        assert refused["id"] is None and refused["problems"] and refused["version"] is None
        assert (await call(client, "list_policies"))["policies"] == []  # not recorded

        planned = await call(client, "plan_policy", {"document": hello()})
        assert planned["recorded"] is False and planned["layers"] == [["greet"]]
        created = await call(client, "create_policy", {"document": hello()})
        assert created == {**created, "id": "hello", "version": 1, "approved": False, "problems": []}
        assert planned["approval"]["hash"] == created["approval_hash"]

        updated = await call(client, "update_policy", {"id": "hello", "document": hello(value="bye")})
        assert updated["version"] == 2
        got = await call(client, "get_policy", {"id": "hello", "version": 1})
        assert (
            got["version"] == 1
            and got["latest_version"] == 2
            and got["document"]["steps"][0]["params"]["value"] == "hi"
        )
        listed = (await call(client, "list_policies"))["policies"]
        assert [(p["id"], p["version"], p["approved_version"]) for p in listed] == [("hello", 2, None)]
        plan = await call(client, "plan_policy", {"id": "hello"})
        assert plan["recorded"] is True and plan["approval"]["hash"] == updated["approval_hash"]
        wrong = await call(client, "update_policy", {"id": "hello", "document": hello("other")})
        assert wrong["problems"][0]["pointer"] == "/id"

        schema = await client.read_resource("pipeline://policies")
        assert json.loads(text_of(schema))["title"]
        doc = await client.read_resource("pipeline://policies/hello")
        assert json.loads(text_of(doc))["steps"][0]["params"]["value"] == "bye"
        return True

    assert agent.run(body)


def test_dry_run_previews_the_email_and_run_pipeline_waits_for_a_person(agent):
    async def body(client):
        created = await call(client, "create_policy", {"document": mailer()})
        preview = await call(client, "dry_run", {"id": "mailer"})
        assert preview["status"] == "SUCCESS"
        assert {s["id"]: s["status"] for s in preview["steps"]} == {"note": "SUCCESS", "mail": "SUCCESS"}
        (mail,) = preview["emails"]
        assert mail["recipients"] == ["team@example.com"] and mail["subject"] == "Numbers"
        assert mail["text"].strip() == "Hello team"

        refused = await call(client, "run_pipeline", {"id": "mailer"}, error=True)
        assert created["approval_hash"] in refused and "engine approve mailer --hash" in refused
        assert "request_approval" in refused

        asked = await call(
            client, "request_approval", {"id": "mailer", "hash": created["approval_hash"], "note": "weekly numbers"}
        )
        assert asked["requested_by"] == "mcp:agent" and asked["approved"] is False
        assert "engine approve mailer --hash" in asked["how_to_approve"]
        return created["approval_hash"]

    digest = agent.run(body)
    engine = agent.store().engine
    (pending,) = approval.requests_for(engine, "mailer", digest)
    assert pending["requested_by"] == "mcp:agent" and pending["note"] == "weekly numbers"

    approval.approve(engine, EngineConfig({}, None, {}), "mailer", digest, "user:ada")  # a person, not the agent

    async def after(client):
        history = await call(client, "get_pipeline_history", {"id": "mailer"})
        assert [r["dry_run"] for r in history["runs"]] == [True]
        run = await client.read_resource("pipeline://history")
        assert json.loads(text_of(run))[0]["policy_id"] == "mailer"
        got = await call(client, "get_run", {"run_id": history["runs"][0]["run_id"]})
        assert got["run"]["dry_run"] is True and got["run"]["steps"]
        return True

    assert agent.run(after)


def test_preview_report_returns_headlines_and_the_first_page_as_png(agent, tmp_path):
    doc = json.loads((ROOT / "policies" / "examples" / "sales_report.json").read_text())
    doc.pop("$schema", None)
    doc["steps"][0]["params"]["path"] = str(ROOT / "policies" / "examples" / "data" / "sales.csv")
    doc["params"]["archive"]["default"] = str(tmp_path / "archive")

    async def body(client):
        await call(client, "create_policy", {"document": doc})
        result = await client.call_tool("preview_report", {"id": "sales-report"})
        assert not result.is_error, result.content[0].text
        data = result.structured_content
        report = data["report"]
        assert report["report_id"] == "monthly-sales"
        revenue = next(m for m in report["metrics"] if m["id"] == "revenue")
        assert revenue["value"] == 1110626.4 and revenue["label"] == "Revenue"
        (alert,) = report["conditional_sections"]
        assert alert["title"] == "Margin alert" and alert["shown"] is True and alert["condition"]
        assert data["pdf"]["uri"] == f"pipeline://artifacts/{data['pdf']['sha256']}"
        (image,) = [c for c in result.content if c.type == "image"]
        assert image.mime_type == "image/png" and base64.b64decode(image.data).startswith(b"\x89PNG")
        pdf = await client.read_resource(data["pdf"]["uri"])
        assert base64.b64decode(pdf.contents[0].blob).startswith(b"%PDF-")
        return True

    assert agent.run(body)
    assert not (tmp_path / "archive").exists()  # a dry run: nothing written


def test_schedules_through_mcp(agent):
    async def body(client):
        created = await call(client, "create_policy", {"document": hello()})
        status = await call(
            client,
            "update_policy_schedule",
            {"id": "hello", "schedule": {"cron": "0 7 * * 1-5", "timezone": "Asia/Tokyo"}},
        )
        (entry,) = status["schedules"]
        assert entry["policy_id"] == "hello" and len(entry["next_fires"]) == 5
        assert entry["next_fires"][0]["local"].endswith("+09:00") and "recent" in entry
        got = await call(client, "get_policy", {"id": "hello"})
        assert got["version"] == 2 and got["approval_hash"] == created["approval_hash"]  # no new approval needed
        assert (await call(client, "get_schedule_status"))["schedules"][0]["description"]
        bad = await call(
            client, "update_policy_schedule", {"id": "hello", "schedule": {"cron": "99 * * * *"}}, error=True
        )
        assert "/schedule/cron" in bad
        cleared = await call(client, "update_policy_schedule", {"id": "hello", "schedule": None})
        assert cleared["schedules"] == [] and (await call(client, "get_schedule_status"))["schedules"] == []
        return True

    assert agent.run(body)


def test_refusals_say_why(agent):
    quota = EngineConfig({"quotas": {"runs_per_hour": 1}}, None, {})

    async def setup(client):
        return (await call(client, "create_policy", {"document": hello()}))["approval_hash"]

    digest = agent.run(setup)
    approval.approve(agent.store().engine, quota, "hello", digest, "user:ada")

    async def over_quota(client):
        first = await call(client, "run_pipeline", {"id": "hello", "wait_s": 30})
        assert first["finished"] is True and first["status"] == "SUCCESS" and first["run"]["status"] == "SUCCESS"
        text = await call(client, "run_pipeline", {"id": "hello"}, error=True)
        assert "runs_per_hour" in text and "allowed at" in text
        return True

    assert agent.run(over_quota, config=quota)

    core_only = EngineConfig({"engine": {"allowed_step_types": ["core.*"]}}, None, {})

    async def not_allowed(client):
        refused = await call(
            client,
            "create_policy",
            {
                "document": {
                    **hello("fetcher"),
                    "steps": [{"id": "f", "type": "fetch.file", "params": {"path": "x.csv"}}],
                }
            },
        )
        assert refused["id"] is None and "fetch.file" in json.dumps(refused["problems"])
        text = await call(client, "run_pipeline", {"id": "mailer-old"}, error=True)
        assert "no policy 'mailer-old'" in text
        return True

    assert agent.run(not_allowed, config=core_only)

    async def too_many(client):
        doc = {
            **hello("blast"),
            "steps": [
                {
                    "id": "m",
                    "type": "send.email",
                    "params": {
                        "from": "a@example.com",
                        "to": [f"p{i}@example.com" for i in range(60)],
                        "subject": "x",
                        "text": "y",
                    },
                }
            ],
        }
        refused = await call(client, "create_policy", {"document": doc})
        assert refused["id"] is None and "recipients" in json.dumps(refused["problems"])
        return True

    assert agent.run(too_many)

    async def viewer(client):
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == READ_ONLY
        text = await call(client, "create_policy", {"document": hello("v")}, error=True)
        assert "role viewer" in text
        return True

    assert agent.run(viewer, role="viewer", actor="vic")

    async def other_workspace(client):
        text = await call(client, "get_policy", {"id": "hello"}, error=True)
        assert "no policy 'hello'" in text
        text = await call(client, "run_pipeline", {"id": "hello"}, error=True)
        assert "no policy 'hello'" in text
        return True

    assert agent.run(other_workspace, workspace="other")
