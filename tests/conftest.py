"""Shared fixtures: a clean environment, real state directories, policy files, the real CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.stepkit  # noqa: F401  (registers the test.* step types)
from engine import redact
from engine.api import RunResult, resume_run, run_policy
from engine.plugins import load_plugins
from engine.store import Store
from tests import pg

ROOT = Path(__file__).resolve().parent.parent
load_plugins()  # the built-in stages, through their entry points, as the CLI does


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ENGINE_* variable leaks into a test; registered secrets are forgotten after it."""
    for name in list(os.environ):
        if name.startswith("ENGINE_"):
            monkeypatch.delenv(name)
    tests.stepkit.Concurrency.reset()
    yield
    redact.clear()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


# -- SQLite and PostgreSQL --------------------------------------------------------------------
# The suites (paths) and tests (path::name) below run each test that asks for `db_url` (directly or
# through `store`, `gov_store`, `start_server`...) twice: on SQLite ("sqlite") and on a database of a
# throwaway PostgreSQL server ("postgresql", tests/pg.py). A test marked `sqlite_only("why")` runs on
# SQLite alone. The rest of the suite runs on SQLite (keep the whole under 10 minutes).
# TEST_POSTGRES=require fails (instead of skipping) when no PostgreSQL server can be started;
# TEST_POSTGRES=off runs SQLite alone.
BOTH_DATABASES = (
    "tests/engine/test_store.py",
    "tests/engine/test_runner.py",
    "tests/engine/test_resume.py",
    "tests/engine/test_scheduler.py",
    "tests/engine/test_leases.py",
    "tests/governance/",
    "tests/server/",
    # deliveries and their claims, report versions, the fetch cache, cursors (pipeline_state)
    "tests/steps/test_send_idempotency.py",
    "tests/steps/test_report_build.py::test_a_new_version_only_when_the_snapshot_changes",
    "tests/steps/test_report_build.py::test_a_dry_run_computes_the_version_without_storing_it",
    "tests/steps/test_fetch_http.py::test_within_ttl_a_cached_fetch_makes_no_request",
    "tests/steps/test_fetch_http.py::test_after_ttl_a_304_revalidates",
    "tests/steps/test_fetch_http.py::test_the_cache_table_keeps_no_query_string_or_header_value",
    "tests/steps/test_fetch_http.py::test_a_failed_run_does_not_advance_the_http_cursor",
    "tests/steps/test_fetch_sql.py::test_incremental_reads_only_new_rows_and_advances_on_success",
    "tests/steps/test_fetch_sql.py::test_resuming_a_failed_run_to_success_advances_the_cursor",
)
POSTGRES_MODE = os.environ.get("TEST_POSTGRES", "")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): run on SQLite only, not on both databases")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("sqlite_only"):
        return
    path = Path(metafunc.definition.path).relative_to(ROOT).as_posix()
    if path.startswith(BOTH_DATABASES) or f"{path}::{metafunc.definition.originalname}" in BOTH_DATABASES:
        metafunc.parametrize("database", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg.PostgresServer | str]:
    """The session's PostgreSQL server (one per xdist worker), or why there is none."""
    if POSTGRES_MODE == "off":
        yield "TEST_POSTGRES=off"
        return
    try:
        server = pg.start()
    except pg.Unavailable as exc:
        if POSTGRES_MODE == "require":
            raise
        yield str(exc)
        return
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """The state database of the test: "sqlite" (the default) or "postgresql"."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def db_url(database: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """None for SQLite (the state directory's engine.db); on PostgreSQL a new database of the test's
    own (with the engine's tables), also set as ENGINE_DB_URL for what opens stores from the
    environment (the CLI, the server)."""
    if database == "sqlite":
        yield None
        return
    server = request.getfixturevalue("postgres_server")
    if isinstance(server, str):
        pytest.skip(f"PostgreSQL is not available: {server}")
    url = server.create_database()
    monkeypatch.setenv("ENGINE_DB_URL", url)
    yield url
    server.drop_database(url)


@pytest.fixture
def store(state_dir: Path, db_url: str | None) -> Iterator[Store]:
    s = Store(state_dir, db_url)
    yield s
    s.close()


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[..., Path]:
    """Write a policy dict (or raw text) to a file and return its path."""

    def write(doc: dict[str, Any] | str, name: str = "policy.json") -> Path:
        path = tmp_path / name
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2), encoding="utf-8")
        return path

    return write


def policy(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A minimal valid policy document around ``steps``."""
    return {"schema_version": 1, "id": top.pop("id", "test"), "steps": list(steps), **top}


@pytest.fixture
def run(store: Store, write_policy: Callable[..., Path]) -> Callable[..., RunResult]:
    """Run a policy dict in-process against the real SQLite store."""

    def go(doc: dict[str, Any], **kwargs: Any) -> RunResult:
        path = write_policy(doc)
        return asyncio.run(run_policy(path, store=store, **kwargs))

    return go


@pytest.fixture
def resume(store: Store) -> Callable[..., RunResult]:
    def go(run_id: str, **kwargs: Any) -> RunResult:
        return asyncio.run(resume_run(run_id, store=store, **kwargs))

    return go


@pytest.fixture
def cli(state_dir: Path, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real ``engine`` command in a subprocess (with the test step types loaded)."""

    def go(
        *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
        if os.environ.get("ENGINE_DB_URL"):  # set by db_url for a test on PostgreSQL
            full_env["ENGINE_DB_URL"] = os.environ["ENGINE_DB_URL"]
        full_env.update(
            {
                "ENGINE_STATE_DIR": str(state_dir),
                "ENGINE_PLUGINS": "tests.stepkit",
                "PYTHONPATH": str(ROOT),
                "COLUMNS": "200",
            }
        )
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "engine", *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            cwd=cwd or tmp_path,
        )

    return go
