"""Objects the steps of a run share (``ctx.shared``): opened once, closed when the run ends, however it ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from engine import Step, StepContext, StepError
from engine.api import run_policy
from engine.store import Store

EVENTS: list[str] = []


@contextlib.asynccontextmanager
async def _browser():
    EVENTS.append("open")
    try:
        yield object()
    finally:
        EVENTS.append("close")


class UsesShared(Step, type="test.uses_shared"):
    class Params(BaseModel):
        fail: bool = False
        hang: bool = False

    async def run(self, params: Params, ctx: StepContext) -> dict:
        thing = await ctx.shared("test.browser", _browser)
        EVENTS.append(f"use {ctx.step_id} {id(thing)}")
        if params.hang:
            await asyncio.sleep(60)
        if params.fail:
            raise StepError("boom", retryable=False)
        return {"ok": True}


def _policy(tmp_path: Path, *steps: dict) -> Path:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"schema_version": 1, "id": "shared", "steps": list(steps)}))
    return path


@pytest.fixture(autouse=True)
def _clear():
    EVENTS.clear()


def _run(path: Path, tmp_path: Path):
    store = Store(tmp_path / "state")
    try:
        return asyncio.run(run_policy(path, store=store))
    finally:
        store.close()


def test_every_step_of_a_run_gets_the_same_object_and_it_is_closed_once_at_the_end(tmp_path):
    path = _policy(
        tmp_path,
        {"id": "a", "type": "test.uses_shared"},
        {"id": "b", "type": "test.uses_shared"},
        {"id": "c", "type": "test.uses_shared", "depends_on": ["a", "b"]},
    )
    result = _run(path, tmp_path)
    assert result.status == "SUCCESS"
    assert EVENTS[0] == "open" and EVENTS[-1] == "close"
    assert EVENTS.count("open") == 1 and EVENTS.count("close") == 1
    uses = [e for e in EVENTS if e.startswith("use")]
    assert len(uses) == 3 and len({u.split()[-1] for u in uses}) == 1


def test_a_failed_run_closes_its_shared_objects_too(tmp_path):
    path = _policy(tmp_path, {"id": "a", "type": "test.uses_shared", "params": {"fail": True}})
    result = _run(path, tmp_path)
    assert result.status == "FAILED"
    assert EVENTS == ["open", EVENTS[1], "close"]


def test_each_run_opens_its_own(tmp_path):
    path = _policy(tmp_path, {"id": "a", "type": "test.uses_shared"})
    _run(path, tmp_path)
    _run(path, tmp_path)
    assert EVENTS.count("open") == 2 and EVENTS.count("close") == 2


def test_a_run_without_shared_objects_opens_none(tmp_path):
    path = _policy(tmp_path, {"id": "a", "type": "core.value", "params": {"value": 1}})
    assert _run(path, tmp_path).status == "SUCCESS"
    assert EVENTS == []


def test_a_context_outside_a_run_keeps_its_own_until_close_shared():
    ctx = StepContext(run_id="r", step_id="s", attempt=1, run={}, params={}, dry_run=False, log=None, artifacts=None)  # type: ignore[arg-type]

    async def go():
        first = await ctx.shared("test.browser", _browser)
        assert await ctx.shared("test.browser", _browser) is first
        await ctx.close_shared()

    asyncio.run(go())
    assert EVENTS == ["open", "close"]


def test_a_cancelled_run_closes_its_shared_objects(tmp_path):
    path = _policy(tmp_path, {"id": "a", "type": "test.uses_shared", "params": {"hang": True}})

    async def go():
        store = Store(tmp_path / "state")
        runners = []
        task = asyncio.create_task(run_policy(path, store=store, on_runner=runners.append))
        while not any(e.startswith("use") for e in EVENTS):
            await asyncio.sleep(0.01)
        runners[0].cancel("cancelled by SIGINT")
        try:
            return await task
        finally:
            store.close()

    result = asyncio.run(go())
    assert result.status == "CANCELLED"
    assert EVENTS[-1] == "close" and EVENTS.count("close") == 1
