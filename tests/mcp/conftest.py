"""MCP tests: the SDK's own client, in-process (over memory, no transport) or over stdio/HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from anyio.from_thread import run_sync as on_loop
from mcp import Client

from engine.config import EngineConfig
from engine.server.mcp import McpSession, build
from engine.service import Caller, Workspace
from engine.service.executor import RunExecutor
from engine.store import Store


def hello(policy_id: str = "hello", value: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "id": policy_id,
        "steps": [{"id": "greet", "type": "core.value", "params": {"value": value}}],
        **extra,
    }


class Agent:
    """Runs ``body(client)`` against an in-process MCP server for one workspace and caller."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stores: dict[str, Store] = {}

    def store(self, workspace: str = "default") -> Store:
        if workspace not in self.stores:
            path = self.root if workspace == "default" else self.root / "workspaces" / workspace
            self.stores[workspace] = Store(path)
        return self.stores[workspace]

    def run(
        self,
        body: Callable[[Client], Any],
        *,
        role: str = "author",
        actor: str = "mcp:agent",
        workspace: str = "default",
        config: EngineConfig | None = None,
    ) -> Any:
        async def main() -> Any:
            executor = RunExecutor(2)

            def launch(prepared: Any) -> None:
                on_loop(executor.submit, prepared)

            ws = Workspace(
                workspace, self.store(workspace), config or EngineConfig({}, None, {}), approval_default=True
            )
            session = McpSession(Caller(actor, role, workspace), ws, launch)
            try:
                async with Client(build(lambda ctx: session)) as client:
                    return await body(client)
            finally:
                await executor.shutdown(10)

        return asyncio.run(main())

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path / "state")
    yield a
    a.close()


async def call(client: Client, name: str, arguments: dict[str, Any] | None = None, error: bool = False) -> Any:
    """Call a tool; check its structured result against the tool's output schema (or that it failed)."""
    result = await client.call_tool(name, arguments or {})
    if error:
        assert result.is_error, result
        return result.content[0].text
    assert not result.is_error, result.content[0].text
    tools = {t.name: t for t in (await client.list_tools()).tools}
    schema = tools[name].output_schema
    assert schema is not None and result.structured_content is not None
    jsonschema.validate(result.structured_content, schema)
    assert result.content[0].type == "text" and result.content[0].text  # a short summary beside the data
    return result.structured_content


def text_of(resource: Any) -> str:
    return resource.contents[0].text


def document_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2)
