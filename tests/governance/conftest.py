"""Governance tests: a real state database per test (SQLite, and PostgreSQL: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.governance import tables
from engine.store import Store


@pytest.fixture
def gov_store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    store = Store(tmp_path / "state", db_url)
    with store.engine.begin() as conn:  # idempotent: the store's migration creates them too
        tables.create(conn)
    yield store
    store.close()


@pytest.fixture
def engine_(gov_store: Store):
    return gov_store.engine


def config(**sections: dict) -> EngineConfig:
    return EngineConfig(sections, None, {})


def policy(policy_id: str = "daily", value: int = 1, schedule: dict | None = None) -> dict:
    doc: dict = {
        "schema_version": 1,
        "id": policy_id,
        "steps": [{"id": "a", "type": "core.value", "params": {"value": value}}],
    }
    if schedule is not None:
        doc["schedule"] = schedule
    return doc
