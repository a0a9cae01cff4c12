"""`engine due`, `engine schedule`, `engine export`, `engine prune` and the new `runs`/`show` output,
through the real command in subprocesses."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import click
import pytest

from engine.cli import cli as cli_group
from engine.scheduler import utc_now


def scheduled(policy_id: str, schedule: dict[str, Any], step: dict[str, Any] | None = None, **top: Any) -> dict:
    step = step or {"id": "nap", "type": "test.sleep", "params": {"value": {"ref": "ctx.run.scheduled_for"}}}
    return {"schema_version": 1, "id": policy_id, "schedule": schedule, "steps": [step], **top}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "policies"
    path.mkdir()
    return path


def put(folder: Path, doc: dict[str, Any] | str, name: str | None = None) -> Path:
    path = folder / (name or f"{doc['id']}.json")  # type: ignore[index]
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def db(state_dir: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(state_dir / "engine.db") as con:
        return con.execute(sql, args).fetchall()


# -- engine due -------------------------------------------------------------------------------


def test_due_runs_a_due_slot_once_then_finds_nothing_due(cli, folder, state_dir):
    put(folder, scheduled("hourly", {"interval_minutes": 60}))
    first = cli("due", str(folder))
    assert first.returncode == 0, first.stderr
    [(slot, run_id, trigger)] = db(state_dir, "select scheduled_for, id, trigger from runs")
    hour = utc_now().replace(minute=0, second=0, microsecond=0)
    assert slot == hour.isoformat()  # the newest slot: never run means due now
    assert trigger == "schedule"
    assert first.stdout == f"hourly {slot} SUCCESS run {run_id}\n"
    again = cli("due", str(folder))
    assert (again.returncode, again.stdout) == (0, "nothing due\n")
    assert len(db(state_dir, "select 1 from runs")) == 1


def test_due_exits_1_when_a_run_fails_and_says_so_in_json(cli, folder, state_dir):
    put(folder, scheduled("good", {"interval_minutes": 60}))
    put(folder, scheduled("bad", {"interval_minutes": 60}, {"id": "boom", "type": "test.fail", "params": {}}))
    result = cli("due", "--json", "--max-parallel", "2", str(folder))
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["status"] == "FAILED" and body["invalid"] == []
    assert sorted((r["policy_id"], r["status"]) for r in body["runs"]) == [("bad", "FAILED"), ("good", "SUCCESS")]
    assert set(body["runs"][0]) == {"policy_id", "scheduled_for", "status", "run_id", "reason"}


def test_due_exits_1_for_an_invalid_policy_file_and_still_runs_the_others(cli, folder, state_dir):
    put(folder, scheduled("good", {"interval_minutes": 60}))
    put(folder, '{"schema_version": 1, "id": "bad", "schedule": {"cron": "* *"}, "steps": []}', "bad.json")
    result = cli("due", "--json", str(folder))
    assert result.returncode == 1
    body = json.loads(result.stdout)
    problems = [
        "/schedule/cron: a cron expression has 5 fields (minute hour day-of-month month day-of-week), got 2"
        " (got '* *')",
        "/steps: must not be empty",
    ]
    path = str(folder / "bad.json")
    assert body["invalid"] == [{"path": path, "policy_id": "bad", "problems": problems, "files": [path]}]
    assert [(r["policy_id"], r["status"]) for r in body["runs"]] == [("good", "SUCCESS")]
    logged = [json.loads(line) for line in result.stderr.splitlines() if '"schedule.invalid"' in line]
    assert logged[0]["problems"] == problems


def four_copies(folder: Path) -> list[Path]:
    """Four files with the id "tick": a broken one first by name, then three valid ones."""
    broken = put(folder, '{"schema_version": 1, "id": "tick", "schedule": {"cron": "* *"}, "steps": []}', "0.json")
    return [broken] + [put(folder, scheduled("tick", {"interval_minutes": 60}), f"{n}.json") for n in "abc"]


SHARED = "policy id 'tick' is used by 4 files: {}, {}, {}, {}; none of them runs until only one has it"


def test_due_runs_none_of_four_files_sharing_an_id_and_uses_no_slot_until_one_remains(cli, folder, state_dir):
    paths = four_copies(folder)
    put(folder, scheduled("other", {"interval_minutes": 60}))
    result = cli("due", str(folder))
    assert result.returncode == 1
    [other] = db(state_dir, "select id from runs where policy_id = 'other'")
    assert result.stdout.splitlines() == [
        f"other {utc_now().replace(minute=0, second=0, microsecond=0).isoformat()} SUCCESS run {other[0]}",
        f"{paths[0]}: invalid, not run (see the log for its problems)",
        SHARED.format(*paths),
    ]
    assert db(state_dir, "select count(*) from schedule_slots where policy_id = 'tick'") == [(0,)]
    assert db(state_dir, "select count(*) from runs where policy_id = 'tick'") == [(0,)]
    [logged] = [json.loads(line) for line in result.stderr.splitlines() if '"schedule.duplicate_id"' in line]
    assert logged["files"] == [str(p) for p in paths]
    assert logged["problem"] == "/id: " + SHARED.format(*paths)
    for path in paths[:3]:
        path.unlink()
    again = cli("due", "--json", str(folder))
    assert again.returncode == 0, again.stderr
    body = json.loads(again.stdout)
    assert (body["status"], body["invalid"]) == ("SUCCESS", [])
    assert [(r["policy_id"], r["status"]) for r in body["runs"]] == [("tick", "SUCCESS")]
    [(policy_path,)] = db(state_dir, "select policy_path from runs where policy_id = 'tick'")
    assert policy_path.endswith("c.json")


def test_schedule_json_lists_every_file_sharing_an_id_under_invalid(cli, folder):
    paths = four_copies(folder)
    result = cli("schedule", "--json", str(folder))
    assert result.returncode == 0
    body = json.loads(result.stdout)
    assert body["policies"] == []
    files = [str(p) for p in paths]
    shared = "/id: " + SHARED.format(*paths)
    assert body["invalid"] == [
        {
            "path": files[0],
            "policy_id": "tick",
            "problems": [
                "/schedule/cron: a cron expression has 5 fields (minute hour day-of-month month day-of-week),"
                " got 2 (got '* *')",
                "/steps: must not be empty",
                shared,
            ],
            "files": files,
        },
        *({"path": f, "policy_id": "tick", "problems": [shared], "files": files} for f in files[1:]),
    ]
    text = cli("schedule", str(folder))
    assert text.stdout.splitlines() == [
        f"{paths[0]}: invalid (engine validate {paths[0]})",
        SHARED.format(*paths),
    ]


def test_due_leaves_disabled_and_unscheduled_policies_alone(cli, folder, state_dir):
    put(folder, scheduled("off", {"interval_minutes": 60, "enabled": False}))
    put(folder, {"schema_version": 1, "id": "manual", "steps": [{"id": "a", "type": "core.value", "params": {}}]})
    result = cli("due", str(folder))
    assert (result.returncode, result.stdout) == (0, "nothing due\n")
    assert db(state_dir, "select count(*) from runs") == [(0,)]


def test_due_passes_schedule_params_to_the_run(cli, folder, state_dir):
    step = {"id": "who", "type": "core.value", "params": {"value": {"ref": "ctx.params.region"}}}
    doc = scheduled("regional", {"interval_minutes": 60, "params": {"region": "eu"}}, step)
    put(folder, {**doc, "params": {"region": {"type": "string", "default": "us"}}})
    assert cli("due", str(folder)).returncode == 0
    assert db(state_dir, "select params_json from runs") == [('{"region":"eu"}',)]


# -- engine schedule --------------------------------------------------------------------------


def test_schedule_json_shows_next_fires_in_utc_and_local_time_last_run_and_overdue(cli, folder):
    put(folder, scheduled("morning", {"cron": "0 7 * * *", "timezone": "Europe/Berlin"}))
    put(folder, {"schema_version": 1, "id": "manual", "steps": [{"id": "a", "type": "core.value", "params": {}}]})
    before = json.loads(cli("schedule", "--json", str(folder)).stdout)
    manual, morning = before["policies"]
    assert manual == {"policy_id": "manual", "path": str(folder / "manual.json"), "schedule": None}
    assert morning["description"] == "at 07:00 every day (Europe/Berlin)"
    assert morning["schedule"] == {"cron": "0 7 * * *", "timezone": "Europe/Berlin"}
    assert len(morning["next_fires"]) == 5
    first = morning["next_fires"][0]
    local = dt.datetime.fromisoformat(first["local"])
    assert (local.hour, local.minute) == (7, 0)
    assert dt.datetime.fromisoformat(first["utc"]) == local
    assert morning["last_run"] is None and morning["overdue"] is True  # never ran: due now
    assert cli("due", str(folder)).returncode == 0
    after = json.loads(cli("schedule", "--json", str(folder)).stdout)["policies"][1]
    assert after["overdue"] is False
    assert after["last_run"]["status"] == "SUCCESS"
    assert set(after["last_run"]) == {"scheduled_for", "run_id", "status", "duration_s"}


def test_schedule_text_lists_the_next_fires(cli, folder):
    put(folder, scheduled("weekdays", {"cron": "30 6 * * 1-5"}))
    result = cli("schedule", "--count", "2", str(folder))
    lines = result.stdout.splitlines()
    assert lines[0] == f"weekdays  ({folder / 'weekdays.json'}): at 06:30 on Mon-Fri (UTC)"
    assert [line.split()[0] for line in lines[1:3]] == ["next", "next"]
    assert lines[3:] == ["  last run: never", "  OVERDUE: a slot is due and has not run"]


@pytest.mark.parametrize("command", ["serve", "due", "schedule"])
def test_usage_and_help_say_folder(cli, command):
    result = cli(command, "--help")
    assert result.stdout.splitlines()[0] == f"Usage: engine {command} [OPTIONS] FOLDER..."
    assert "each FOLDER" in result.stdout and "POLICY_DIR" not in result.stdout


@pytest.mark.parametrize("command", ["serve", "due", "schedule", "export", "prune"])
def test_every_option_of_the_scheduling_commands_has_a_help_text(command):
    found = cli_group.get_command(click.Context(cli_group), command)  # loaded on first use
    options = [p for p in found.params if isinstance(p, click.Option)]
    assert options and [o.name for o in options if not o.help] == []


# -- runs, show -------------------------------------------------------------------------------


def test_runs_filters_by_trigger_and_time_and_show_prints_the_slot(cli, folder, state_dir, write_policy):
    put(folder, scheduled("hourly", {"interval_minutes": 60}))
    assert cli("due", str(folder)).returncode == 0
    manual = write_policy(
        {"schema_version": 1, "id": "hand", "steps": [{"id": "a", "type": "core.value", "params": {}}]}
    )
    assert cli("run", str(manual)).returncode == 0
    scheduled_runs = json.loads(cli("runs", "--json", "--trigger", "schedule").stdout)["runs"]
    assert [r["policy_id"] for r in scheduled_runs] == ["hourly"]
    assert scheduled_runs[0]["scheduled_for"].endswith(":00:00+00:00")
    assert [r["policy_id"] for r in json.loads(cli("runs", "--json", "--trigger", "manual").stdout)["runs"]] == ["hand"]
    tomorrow = (utc_now() + dt.timedelta(days=1)).date().isoformat()
    assert json.loads(cli("runs", "--json", "--since", tomorrow).stdout)["runs"] == []
    assert len(json.loads(cli("runs", "--json", "--until", tomorrow).stdout)["runs"]) == 2
    bad = cli("runs", "--since", "yesterday")
    assert bad.returncode == 2
    assert "--since 'yesterday': expected an ISO 8601 time such as 2026-12-01T07:00 or 2026-12-01" in bad.stderr
    run_id = scheduled_runs[0]["run_id"]
    shown = cli("show", run_id).stdout.splitlines()
    assert shown[2] == f"slot {scheduled_runs[0]['scheduled_for']}"
    assert json.loads(cli("show", "--json", run_id).stdout)["scheduled_for"] == scheduled_runs[0]["scheduled_for"]


# -- export -----------------------------------------------------------------------------------


def test_export_writes_summary_and_steps_under_the_runs_utc_start_time(cli, write_policy, tmp_path, state_dir):
    doc = {"schema_version": 1, "id": "hand", "steps": [{"id": "a", "type": "core.value", "params": {"value": 7}}]}
    run = json.loads(cli("run", "--json", str(write_policy(doc))).stdout)
    out = tmp_path / "exports"
    result = cli("export", run["run_id"], "--out", str(out))
    assert result.returncode == 0, result.stderr
    stamp = dt.datetime.fromisoformat(run["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    folder = out / "hand" / stamp
    assert result.stdout == f"wrote {folder / 'summary.json'}\nwrote {folder / 'steps.jsonl'}\n"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["run_id"] == run["run_id"] and summary["status"] == "SUCCESS" and summary["params"] == {}
    [step] = [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines()]
    assert (step["step_id"], step["status"], step["output"]) == ("a", "SUCCESS", 7)
    first = (folder / "summary.json").read_bytes(), (folder / "steps.jsonl").read_bytes()
    assert cli("export", run["run_id"], "--out", str(out)).returncode == 0
    assert ((folder / "summary.json").read_bytes(), (folder / "steps.jsonl").read_bytes()) == first  # deterministic


# -- prune ------------------------------------------------------------------------------------


def test_prune_dry_run_lists_then_prune_removes(cli, write_policy, state_dir):
    doc = {
        "schema_version": 1,
        "id": "hand",
        "retention": {"days": 10, "keep_latest_n_runs": 1},
        "steps": [{"id": "a", "type": "core.value", "params": {"value": 1}}],
    }
    path = write_policy(doc)
    ids = [json.loads(cli("run", "--json", str(path)).stdout)["run_id"] for _ in range(3)]
    old = (utc_now() - dt.timedelta(days=30)).isoformat()
    with sqlite3.connect(state_dir / "engine.db") as con:
        con.execute("update runs set started_at = ? where id in (?, ?)", (old, ids[0], ids[1]))
    dry = cli("prune", "--dry-run")
    assert dry.returncode == 0
    assert dry.stdout.splitlines()[-1] == "would remove 2 runs, 0 artifacts, 0 preview folders"
    first = sorted(ids[:2])[0]  # same start time: ordered by run id
    assert dry.stdout.splitlines()[0] == f"would remove run {first}  hand  SUCCESS  started {old}"
    assert len(db(state_dir, "select 1 from runs")) == 3
    done = json.loads(cli("prune", "--json").stdout)
    assert [r["run_id"] for r in done["runs"]] == sorted(ids[:2])
    assert done["dry_run"] is False
    assert db(state_dir, "select id from runs") == [(ids[2],)]
