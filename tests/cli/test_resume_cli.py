"""Resuming after an edit, as a user does it from the command line: the hints say when the file
changed, kept side effects are named, --rerun runs them again, and show/runs tell what happened."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from engine.api import run_policy
from tests.conftest import policy


def chain(effect_file: Path, value: int = 1, fail: bool = True) -> dict:
    """source -> store (a side effect: appends the value to effect_file) -> check (fails when ``fail``)."""
    return policy(
        {"id": "source", "type": "core.value", "params": {"value": value}},
        {
            "id": "store",
            "type": "test.effect",
            "params": {"path": str(effect_file), "line": {"template": "{{ ctx.source }}"}},
        },
        {
            "id": "check",
            "type": "test.fail" if fail else "core.value",
            "params": {} if fail else {"value": 1},
            "depends_on": ["store"],
        },
    )


def run_id_of(result) -> str:
    return json.loads(result.stdout)["run_id"]


def test_the_failure_hint_is_plain_while_the_file_is_unchanged(cli, write_policy, tmp_path):
    path = write_policy(chain(tmp_path / "effects.txt"))
    result = cli("run", str(path))
    assert result.returncode == 1
    run_id = json.loads(cli("runs", "--json").stdout)["runs"][0]["run_id"]
    assert f"resume with: engine resume {run_id}\n" in result.stderr


def test_resume_without_policy_says_the_file_changed_and_prints_the_policy_form(cli, write_policy, tmp_path):
    path = write_policy(chain(tmp_path / "effects.txt"))
    run_id = run_id_of(cli("run", str(path), "--json"))
    write_policy(chain(tmp_path / "effects.txt", fail=False))  # the user fixes the file
    shown = cli("show", run_id)
    assert f"resume with: engine resume {run_id} --policy policy.json" in shown.stdout

    resumed = cli("resume", run_id)
    assert resumed.returncode == 1  # the recorded policy fails the same way
    assert (
        f"warning: policy.json has changed since run {run_id} started; this resume uses the policy as the run "
        f"recorded it, not your edits. To resume with the edited file: engine resume {run_id} --policy policy.json"
    ) in " ".join(resumed.stderr.split())
    hint = f"resume with: engine resume {run_id} --policy policy.json"
    assert f"{hint}  (the policy file has changed since this run started)" in resumed.stderr
    fixed = cli("resume", run_id[:12], "--policy", str(path), "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["status"] == "SUCCESS"


def test_resume_help_says_edits_need_policy_and_run_id_may_be_a_prefix(cli):
    text = " ".join(cli("resume", "--help").stdout.split())
    assert "RUN_ID may be a unique prefix of the run id" in text
    assert "Edits to the policy file need --policy FILE" in text
    assert "--rerun STEP" in text


def test_a_kept_side_effect_downstream_of_a_change_is_named_and_rerun_runs_it_again(cli, write_policy, tmp_path):
    effects = tmp_path / "effects.txt"
    path = write_policy(chain(effects, value=1))
    run_id = run_id_of(cli("run", str(path), "--json"))
    assert effects.read_text() == "1\n"

    path = write_policy(chain(effects, value=2, fail=False))  # new data upstream of the store
    kept = cli("resume", run_id, "--policy", str(path), "--json")
    assert kept.returncode == 0, kept.stderr
    assert (
        "warning: side-effect step store succeeded before and is kept, though it changed or depends on a "
        "changed step (source, check): what it did is not redone with the new data. To run it again, add --rerun store"
    ) in " ".join(kept.stderr.split())
    assert effects.read_text() == "1\n"  # kept: not written again


def test_rerun_runs_a_kept_side_effect_step_again_and_is_recorded(cli, write_policy, tmp_path):
    effects = tmp_path / "effects.txt"
    path = write_policy(chain(effects, value=1))
    run_id = run_id_of(cli("run", str(path), "--json"))
    path = write_policy(chain(effects, value=2, fail=False))
    resumed = cli("resume", run_id, "--policy", str(path), "--rerun", "store", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "warning" not in resumed.stderr
    assert effects.read_text() == "1\n2\n"
    data = json.loads(resumed.stdout)
    assert [(s["id"], s["run_attempt"], s["kept"]) for s in data["steps"]] == [
        ("source", 2, False),
        ("store", 2, False),
        ("check", 2, False),
    ]
    (entry,) = data["resumes"]
    assert entry["attempt"] == 2
    assert entry["policy_source"] == str(path.resolve())
    assert entry["changed"] == ["source", "check"]
    assert entry["rerun"] == ["store"]
    assert entry["kept"] == []


def test_rerun_of_an_unknown_step_is_a_usage_error(cli, write_policy, tmp_path):
    path = write_policy(chain(tmp_path / "effects.txt"))
    run_id = run_id_of(cli("run", str(path), "--json"))
    result = cli("resume", run_id, "--rerun", "stor")
    assert result.returncode == 2
    assert "--rerun 'stor': no such step in policy 'test' (did you mean 'store'?)" in result.stderr


def test_show_tells_kept_steps_from_those_run_by_the_resume(cli, write_policy, tmp_path):
    doc = policy(
        {"id": "a", "type": "core.value", "params": {"value": 1}},
        {"id": "b", "type": "test.flaky", "params": {"counter_file": str(tmp_path / "n"), "fail_times": 1}},
    )
    path = write_policy(doc)
    run_id = run_id_of(cli("run", str(path), "--json"))
    assert cli("resume", run_id).returncode == 0
    data = json.loads(cli("show", run_id, "--json").stdout)
    assert [(s["id"], s["status"], s["run_attempt"], s["kept"]) for s in data["steps"]] == [
        ("a", "SUCCESS", 1, True),
        ("b", "SUCCESS", 2, False),
    ]
    assert data["resumes"][0]["kept"] == ["a"]
    assert data["resumes"][0]["policy_source"] == "recorded"
    text = cli("show", run_id).stdout
    assert "ran in" in text
    row_a = next(line for line in text.splitlines() if line.startswith("│ a "))
    row_b = next(line for line in text.splitlines() if line.startswith("│ b "))
    assert "attempt 1 (kept)" in row_a
    assert "attempt 2" in row_b and "kept" not in row_b
    assert "attempt 2: resumed " in text and "with the recorded policy; kept: a" in text


def test_a_resumed_scheduled_run_keeps_its_trigger_and_runs_lists_its_slot(cli, write_policy, store, tmp_path):
    doc = policy({"id": "b", "type": "test.flaky", "params": {"counter_file": str(tmp_path / "n"), "fail_times": 1}})
    path = write_policy(doc)
    slot = "2026-12-01T07:00:00+00:00"
    first = asyncio.run(run_policy(path, store=store, trigger="schedule", scheduled_for=slot))
    assert first.status == "FAILED"
    resumed = cli("resume", first.run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    data = json.loads(resumed.stdout)
    assert (data["trigger"], data["attempt"], data["scheduled_for"]) == ("schedule", 2, slot)
    scheduled = json.loads(cli("runs", "--trigger", "schedule", "--json").stdout)["runs"]
    assert [(r["run_id"], r["attempt"]) for r in scheduled] == [(first.run_id, 2)]
    resumes = json.loads(cli("runs", "--trigger", "resume", "--json").stdout)["runs"]
    assert [r["run_id"] for r in resumes] == [first.run_id]
    table = cli("runs").stdout
    assert "slot" in table and "2026-12-01 07:00" in table


def test_runs_without_state_creates_nothing_and_names_the_folder(cli, tmp_path):
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    result = cli("runs", env={"ENGINE_STATE_DIR": ""}, cwd=empty)
    assert result.returncode == 0
    assert " ".join(result.stdout.split()) == (
        "no runs yet: there is no run state in .engine/ (runs are recorded in ./.engine where 'engine run' was "
        "started, or in --state-dir / ENGINE_STATE_DIR)"
    )
    assert not (empty / ".engine").exists()
    shown = cli("show", "20261201", env={"ENGINE_STATE_DIR": ""}, cwd=empty)
    assert shown.returncode == 2
    assert "no run '20261201': there is no run state in .engine/" in shown.stderr
    assert not (empty / ".engine").exists()
