"""Retention: old runs go, the latest N and running runs stay, shared artifacts stay."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.errors import ConfigError
from engine.policy import Retention
from engine.retention import effective, global_settings, prune, select
from tests.conftest import policy

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def artifact_policy(text: str, retention: dict | None = None, pid: str = "daily") -> dict:
    step = {"id": "page", "type": "test.artifact", "params": {"text": text}}
    return policy(step, id=pid, **({"retention": retention} if retention else {}))


def age(state_dir: Path, run_id: str, days: float) -> None:
    """Pretend a run started ``days`` before NOW."""
    stamp = (NOW - dt.timedelta(days=days)).isoformat(timespec="microseconds")
    with sqlite3.connect(state_dir / "engine.db") as con:
        con.execute("update runs set started_at = ? where id = ?", (stamp, run_id))


def run_ids(state_dir: Path) -> list[str]:
    with sqlite3.connect(state_dir / "engine.db") as con:
        return [r[0] for r in con.execute("select id from runs order by started_at")]


def row(run_id: str, started_days_ago: float, status: str = "SUCCESS") -> dict:
    started = (NOW - dt.timedelta(days=started_days_ago)).isoformat()
    return {"id": run_id, "started_at": started, "status": status}


def test_select_deletes_runs_older_than_days_oldest_first():
    runs = [row("c", 1), row("a", 40), row("b", 31)]
    assert [r["id"] for r in select(runs, Retention(days=30), NOW)] == ["a", "b"]


def test_select_always_keeps_the_latest_n_even_when_old():
    runs = [row("a", 50), row("b", 40), row("c", 35)]
    assert [r["id"] for r in select(runs, Retention(days=30, keep_latest_n_runs=2), NOW)] == ["a"]


def test_select_with_only_keep_latest_n_deletes_everything_older():
    runs = [row("a", 3), row("b", 2), row("c", 1)]
    assert [r["id"] for r in select(runs, Retention(keep_latest_n_runs=1), NOW)] == ["a", "b"]


def test_select_never_deletes_a_running_run():
    runs = [row("a", 50, "RUNNING"), row("b", 40), row("c", 1)]
    assert [r["id"] for r in select(runs, Retention(days=30), NOW)] == ["b"]


def test_no_settings_keep_everything():
    assert select([row("a", 5000)], Retention(), NOW) == []


def test_policy_fields_override_the_configured_defaults_one_by_one():
    defaults = global_settings(EngineConfig({"retention": {"days": 90, "keep_latest_n_runs": 5}}))
    assert effective(Retention(days=7), defaults) == Retention(days=7, keep_latest_n_runs=5)
    assert effective(None, defaults) == Retention(days=90, keep_latest_n_runs=5)


def test_a_bad_configured_retention_is_a_config_error():
    with pytest.raises(ConfigError, match=r"engine config \[retention\].*days: Input should be greater than or equal"):
        global_settings(EngineConfig({"retention": {"days": -1}}))


def test_prune_deletes_runs_their_steps_and_unshared_artifacts(run, store, state_dir):
    old = run(artifact_policy("only in the old run", {"days": 30})).run_id
    shared_old = run(artifact_policy("shared", {"days": 30})).run_id
    shared_new = run(artifact_policy("shared", {"days": 30})).run_id
    new = run(artifact_policy("fresh", {"days": 30})).run_id
    for run_id, days in ((old, 45), (shared_old, 40), (shared_new, 2), (new, 1)):
        age(state_dir, run_id, days)
    files = sorted(p.name for p in (state_dir / "artifacts").rglob("*") if p.is_file())
    assert len(files) == 3

    dry = prune(store, config=EngineConfig({}), now_utc=NOW, dry_run=True)
    assert [r["run_id"] for r in dry.runs] == [old, shared_old]
    assert len(dry.artifacts) == 1  # 'shared' is still used by shared_new
    assert run_ids(state_dir) == [old, shared_old, shared_new, new]  # a dry run deletes nothing

    done = prune(store, config=EngineConfig({}), now_utc=NOW)
    assert done.runs == dry.runs and done.artifacts == dry.artifacts
    assert run_ids(state_dir) == [shared_new, new]
    remaining = sorted(p.name for p in (state_dir / "artifacts").rglob("*") if p.is_file())
    assert remaining == sorted(set(files) - set(done.artifacts))
    with sqlite3.connect(state_dir / "engine.db") as con:
        assert con.execute("select count(*) from step_runs where run_id in (?, ?)", (old, shared_old)).fetchone() == (
            0,
        )
        assert con.execute("select count(*) from step_attempts where run_id = ?", (old,)).fetchone() == (0,)


def test_prune_uses_global_config_for_policies_without_retention(run, store, state_dir):
    first = run(artifact_policy("a")).run_id
    second = run(artifact_policy("b")).run_id
    age(state_dir, first, 3)
    age(state_dir, second, 2)
    assert prune(store, config=EngineConfig({}), now_utc=NOW).runs == []
    config = EngineConfig({"retention": {"keep_latest_n_runs": 1}})
    assert [r["run_id"] for r in prune(store, config=config, now_utc=NOW).runs] == [first]


def test_prune_removes_a_dry_runs_preview_folder(run, store, state_dir):
    effect = {"id": "write", "type": "test.effect", "params": {"path": str(state_dir / "never.txt")}}
    dry = run(policy(effect, id="mailer", retention={"days": 1}), dry_run=True)
    preview = Path(dry.preview_dir).parent
    assert preview.is_dir()
    age(state_dir, dry.run_id, 5)
    result = prune(store, config=EngineConfig({}), now_utc=NOW)
    assert result.previews == [str(preview)]
    assert not preview.exists()
