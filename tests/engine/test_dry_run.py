"""Dry runs and plans: side effects are previewed, never executed (issue #3 §8)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from engine.plan import make_plan
from engine.validate import validate_document
from tests.conftest import policy


def sql(state_dir: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(state_dir / "engine.db")) as conn:
        return conn.execute(query, args).fetchall()


def outputs(store, run_id: str) -> dict[str, Any]:
    return {s["step_id"]: json.loads(s["output_json"]) if s["output_json"] else None for s in store.get_steps(run_id)}


def test_dry_run_previews_side_effects_and_runs_everything_else(run, store, state_dir, tmp_path):
    target = tmp_path / "out.txt"
    doc = policy(
        {"id": "prepare", "type": "test.flaky", "params": {"counter_file": str(tmp_path / "prepare"), "fail_times": 0}},
        {
            "id": "write",
            "type": "test.effect",
            "params": {"path": str(target), "line": "hello"},
            "depends_on": ["prepare"],
        },
        {"id": "after", "type": "core.value", "params": {"value": {"ref": "ctx.write.would_write"}}},
        {"id": "info", "type": "test.info"},
    )
    result = run(doc, dry_run=True)
    assert (result.status, result.dry_run) == ("SUCCESS", True)
    assert not target.exists()
    assert (tmp_path / "prepare").read_text() == "1"  # steps without side effects really run
    preview_dir = state_dir / "runs" / result.run_id / "preview"
    assert result.preview_dir == str(preview_dir)
    assert sorted(p.name for p in preview_dir.iterdir()) == ["write.json"]
    assert json.loads((preview_dir / "write.json").read_text()) == {"would_write": str(target), "line": "hello"}
    out = outputs(store, result.run_id)
    assert out["write"] == {"would_write": str(target), "line": "hello"}
    assert out["after"] == str(target)
    assert (out["info"]["dry_run"], out["info"]["run"]["dry_run"]) == (True, True)
    assert sql(state_dir, "SELECT dry_run, preview_dir FROM runs") == [(1, str(preview_dir))]
    assert [s.status for s in result.steps] == ["SUCCESS"] * 4


def test_a_normal_run_is_recorded_with_dry_run_0_and_executes_side_effects(run, state_dir, tmp_path):
    target = tmp_path / "out.txt"
    result = run(policy({"id": "write", "type": "test.effect", "params": {"path": str(target)}}))
    assert (result.dry_run, result.preview_dir) == (False, None)
    assert target.read_text() == "done\n"
    assert sql(state_dir, "SELECT dry_run, preview_dir FROM runs") == [(0, None)]
    assert not (state_dir / "runs").exists()


def test_side_effect_step_without_preview_gets_the_default_preview_with_secrets_masked(
    run, store, state_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("TOKEN_X", "very-secret-token")
    target = tmp_path / "raw.txt"
    doc = policy(
        {"id": "raw", "type": "test.raw_effect", "params": {"path": str(target), "token": {"secret": "TOKEN_X"}}}
    )
    result = run(doc, dry_run=True)
    assert result.status == "SUCCESS"
    assert not target.exists()
    expected = {"preview": True, "type": "test.raw_effect", "params": {"path": str(target), "token": "***"}}
    assert outputs(store, result.run_id)["raw"] == expected
    assert json.loads((Path(result.preview_dir) / "raw.json").read_text()) == expected


def test_secrets_in_a_preview_are_redacted(run, state_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LINE_SECRET", "line-secret-value")
    doc = policy(
        {
            "id": "write",
            "type": "test.effect",
            "params": {"path": str(tmp_path / "x"), "line": {"secret": "LINE_SECRET"}},
        }
    )
    result = run(doc, dry_run=True)
    text = (Path(result.preview_dir) / "write.json").read_text()
    assert json.loads(text) == {"would_write": str(tmp_path / "x"), "line": "***"}
    assert not [p for p in state_dir.rglob("*") if p.is_file() and b"line-secret-value" in p.read_bytes()]


def test_core_shell_is_previewed_not_run(run, store, tmp_path):
    marker = tmp_path / "touched"
    doc = policy(
        {"id": "sh", "type": "core.shell", "params": {"argv": ["touch", str(marker)], "env": {"K": "v"}}},
        {"id": "code", "type": "core.value", "params": {"value": {"ref": "ctx.sh.exit_code"}}},
    )
    result = run(doc, dry_run=True)
    assert result.status == "SUCCESS"
    assert not marker.exists()
    out = outputs(store, result.run_id)
    assert out["sh"]["would_run"] == ["touch", str(marker)]
    assert out["sh"]["env"] == ["K"]
    assert out["code"] == 0


def test_resuming_a_dry_run_stays_a_dry_run(run, resume, store, state_dir, tmp_path):
    target = tmp_path / "out.txt"
    counter = tmp_path / "gate"
    doc = policy(
        {"id": "gate", "type": "test.flaky", "params": {"counter_file": str(counter), "fail_times": 1}},
        {"id": "write", "type": "test.effect", "params": {"path": str(target)}, "depends_on": ["gate"]},
    )
    first = run(doc, dry_run=True)
    assert first.status == "FAILED"
    second = resume(first.run_id)
    assert (second.status, second.dry_run, second.preview_dir) == ("SUCCESS", True, first.preview_dir)
    assert not target.exists()
    assert (Path(first.preview_dir) / "write.json").exists()
    assert sql(state_dir, "SELECT dry_run, attempt FROM runs") == [(1, 2)]


def test_cli_dry_run_prints_the_preview_folder(cli, write_policy, state_dir, tmp_path):
    target = tmp_path / "cli.txt"
    path = write_policy(policy({"id": "write", "type": "test.effect", "params": {"path": str(target)}}))
    result = cli("run", "--dry-run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["status"], shown["dry_run"]) == ("SUCCESS", True)
    assert shown["preview_dir"] == str(state_dir / "runs" / shown["run_id"] / "preview")
    assert (Path(shown["preview_dir"]) / "write.json").exists()
    assert not target.exists()
    text = cli("run", "--dry-run", str(path))
    assert text.returncode == 0, text.stderr
    assert "previews: " + str(state_dir / "runs") in text.stderr + text.stdout


# -- plan -------------------------------------------------------------------------------------


PLAN_DOC = policy(
    {"id": "fetch_a", "type": "core.value"},
    {"id": "fetch_b", "type": "core.value"},
    {"id": "join", "type": "core.value", "params": {"value": [{"ref": "ctx.fetch_a"}, {"ref": "ctx.fetch_b"}]}},
    {"id": "send", "type": "test.effect", "params": {"path": "/nonexistent/x"}, "depends_on": ["join"]},
    {
        "id": "weekly",
        "type": "core.value",
        "skip_if": {"ref": "ctx.params.daily", "op": "eq", "value": True},
        "depends_on": ["fetch_a"],
    },
    {"id": "after_weekly", "type": "core.value", "depends_on": ["weekly"]},
    {"id": "after_weekly_anyway", "type": "core.value", "depends_on": ["weekly"], "trigger_rule": "all_done"},
    {"id": "data_gate", "type": "core.value", "skip_if": {"ref": "ctx.join.0", "op": "is_empty"}},
    params={"daily": {"type": "boolean", "default": True}},
    on_failure=[
        {"id": "alert", "type": "test.effect", "params": {"path": "/nonexistent/y"}},
        {"id": "page", "type": "core.value", "depends_on": ["alert"]},
    ],
    max_concurrency=3,
)


def test_plan_layers_and_actions_for_a_dry_run():
    plan = make_plan(validate_document(PLAN_DOC), {"daily": True}, dry_run=True)
    assert (plan.policy_id, plan.max_concurrency, plan.dry_run) == ("test", 3, True)
    assert plan.layers == [
        ["fetch_a", "fetch_b"],
        ["join", "weekly"],
        ["send", "after_weekly", "after_weekly_anyway", "data_gate"],
        ["alert"],
        ["page"],
    ]
    assert [(s.id, s.layer, s.action, s.reason, s.phase) for s in plan.steps] == [
        ("fetch_a", 1, "run", None, "main"),
        ("fetch_b", 1, "run", None, "main"),
        ("join", 2, "run", None, "main"),
        ("weekly", 2, "skip", "skip_if is true for these params", "main"),
        ("send", 3, "preview", None, "main"),
        ("after_weekly", 3, "skip", "upstream 'weekly' will be skipped", "main"),
        ("after_weekly_anyway", 3, "run", None, "main"),
        ("data_gate", 3, "run", None, "main"),  # depends on a step output: not known before running
        ("alert", 4, "preview", None, "on_failure"),
        ("page", 5, "run", None, "on_failure"),
    ]
    assert plan.to_dict()["steps"][2] == {
        "id": "join",
        "type": "core.value",
        "layer": 2,
        "action": "run",
        "depends_on": ["fetch_a", "fetch_b"],
        "phase": "main",
        "reason": None,
    }


def test_plan_without_dry_run_runs_side_effects_and_follows_params():
    plan = make_plan(validate_document(PLAN_DOC), {"daily": False})
    actions = {s.id: s.action for s in plan.steps}
    assert actions["send"] == actions["alert"] == "run"
    assert actions["weekly"] == actions["after_weekly"] == "run"


def test_cli_plan_executes_nothing(cli, write_policy, tmp_path, state_dir):
    target = tmp_path / "never.txt"
    path = write_policy(policy({"id": "write", "type": "test.effect", "params": {"path": str(target)}}))
    result = cli("plan", str(path), "--format", "json", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"][0]["action"] == "preview"
    assert not target.exists()
    assert not (state_dir / "engine.db").exists() or sql(state_dir, "SELECT count(*) FROM runs") == [(0,)]


def test_a_dry_run_copies_the_files_steps_made_into_the_preview_folder(run, state_dir):
    doc = policy(
        {"id": "page", "type": "test.artifact", "params": {"text": "<h1>hi</h1>", "name": "../week.html"}},
        {"id": "nested", "type": "core.value", "params": {"value": {"files": [{"ref": "ctx.page"}]}}},
    )
    result = run(doc, dry_run=True)
    preview = Path(result.preview_dir)
    assert (preview / "page" / "week.html").read_text() == "<h1>hi</h1>"  # the name's folders are dropped
    assert (preview / "nested" / "week.html").read_text() == "<h1>hi</h1>"
    assert not run(doc).preview_dir  # a normal run writes no previews
