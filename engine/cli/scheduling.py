"""The scheduling commands: ``serve``, ``due``, ``schedule``, and history: ``export``, ``prune``."""

from __future__ import annotations

import datetime as dt
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import STOP_DEADLINE_S, _dump, _store, cli, grace_option, interrupts, state_dir_option, stdout

if TYPE_CHECKING:  # the commands import what they use when they run: start-up stays fast
    from ..folders import FolderScan
    from ..store import Store

folders_argument = click.argument(
    "folders",
    nargs=-1,
    required=True,
    metavar="FOLDER...",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)


@cli.command()
@folders_argument
@grace_option
@state_dir_option
@click.pass_context
def serve(ctx: click.Context, folders: tuple[Path, ...], grace_s: float, state_dir: Path | None) -> None:
    """Run the policies in each FOLDER on their schedules until stopped (SIGTERM/SIGINT: exit 0)."""
    import asyncio

    from .. import logs
    from ..config import EngineConfig
    from ..scheduler import Scheduler, clock_from_env

    store = _store(ctx, state_dir)
    logs.configure(store.state_dir)
    scheduler = Scheduler(store, list(folders), EngineConfig.load(), clock=clock_from_env())
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():  # a second signal: do not wait for the grace period
            for runner in list(scheduler.runners.values()):
                runner.cancel(f"cancelled by a second {sig.name}")
            return
        scheduler.log.info("schedule.signal", signal=sig.name)
        stop.set()

    async def main() -> None:
        await scheduler.serve(stop, grace_s)

    try:
        interrupts.run_async(main, on_signal, every_signal=True)
    finally:
        logs.close()
        store.close()


@cli.command()
@folders_argument
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Policies run at the same time (1: one after another).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what ran as one JSON object.")
@state_dir_option
@click.pass_context
def due(
    ctx: click.Context, folders: tuple[Path, ...], max_parallel: int, as_json: bool, state_dir: Path | None
) -> None:
    """Run every policy in each FOLDER whose slot is due now, once; exit 0 if all succeeded, else 1.

    An invalid file, or a policy id that several files share, runs nothing and makes the exit code 1.
    """
    from .. import logs
    from ..config import EngineConfig
    from ..scheduler import Scheduler, clock_from_env
    from ..states import RunState

    store = _store(ctx, state_dir)
    logs.configure(store.state_dir)
    scheduler = Scheduler(store, list(folders), EngineConfig.load(), clock=clock_from_env())

    def on_signal(sig: signal.Signals) -> None:
        scheduler.stopping = True
        for runner in list(scheduler.runners.values()):
            runner.cancel(f"cancelled by {sig.name}")

    async def main() -> Any:
        return await scheduler.due(max_parallel)

    try:
        outcomes, scan = interrupts.run_async(main, on_signal, deadline_s=STOP_DEADLINE_S)
    finally:
        logs.close()
    ok = scan.ok and all(o.status in (RunState.SUCCESS.value, "SKIPPED") for o in outcomes)
    if as_json:
        _dump(
            {
                "status": "SUCCESS" if ok else "FAILED",
                "runs": [o.to_dict() for o in outcomes],
                "invalid": _invalid_entries(scan),
            }
        )
    else:
        for o in outcomes:
            note = f": {o.reason}" if o.reason else ""
            run = f" run {o.run_id}" if o.run_id else ""
            stdout.print(f"{o.policy_id} {o.scheduled_for} {o.status}{note}{run}", markup=False, highlight=False)
        if not outcomes:
            stdout.print("nothing due", markup=False)
        for found in scan.invalid:
            line = f"{found.path}: invalid, not run (see the log for its problems)"
            stdout.print(line, markup=False, highlight=False, soft_wrap=True)
        _print_duplicates(scan)
    store.close()
    raise click.exceptions.Exit(0 if ok else 1)


@cli.command("schedule")
@folders_argument
@click.option("--count", type=click.IntRange(min=1, max=100), default=5, show_default=True, help="Fire times shown.")
@click.option("--json", "as_json", is_flag=True, help="Print the schedules as one JSON object.")
@state_dir_option
@click.pass_context
def schedule_command(
    ctx: click.Context, folders: tuple[Path, ...], count: int, as_json: bool, state_dir: Path | None
) -> None:
    """Show the schedule of each policy in each FOLDER: next fire times, last run, overdue or not.

    Invalid files and policy ids that several files share are listed after the policies.
    """
    from ..config import EngineConfig
    from ..folders import load_folder
    from ..schedule import slot_key
    from ..scheduler import utc_now

    store = _store(ctx, state_dir)
    scan = load_folder(folders, EngineConfig.load())
    now = utc_now()
    entries = [_schedule_entry(store, loaded.valid, str(loaded.path), now, count) for loaded in scan.policies.values()]
    if as_json:
        _dump({"now": slot_key(now), "policies": entries, "invalid": _invalid_entries(scan)})
        return
    for entry in entries:
        _print_entry(entry)
    for found in scan.invalid:
        line = f"{found.path}: invalid (engine validate {found.path})"
        stdout.print(line, markup=False, highlight=False, soft_wrap=True)
    _print_duplicates(scan)


def _invalid_entries(scan: FolderScan) -> list[dict[str, Any]]:
    """``invalid`` of ``--json``: one entry per file that does not run, with every problem it has."""
    from ..folders import problem_text

    entries = []
    for path, problems in scan.problems().items():
        found = scan.files[path]
        entries.append(
            {
                "path": str(path),
                "policy_id": found.valid.id if found.valid else found.raw_id,
                "problems": [problem_text(p) for p in problems],
                "files": [str(p) for p in scan.shared_with(path)],
            }
        )
    return entries


def _print_duplicates(scan: FolderScan) -> None:
    for duplicate in scan.duplicates.values():
        stdout.print(duplicate.problem.message, markup=False, highlight=False, soft_wrap=True)  # one line per id


def _schedule_entry(store: Store, valid: Any, path: str, now: dt.datetime, count: int) -> dict[str, Any]:
    from ..service.schedules import schedule_entry

    return schedule_entry(store, valid, path, now, count)


def _print_entry(entry: dict[str, Any]) -> None:
    out = stdout
    if entry["schedule"] is None:
        out.print(f"{entry['policy_id']}  ({entry['path']}): no schedule", markup=False, highlight=False)
        return
    state = "" if entry["enabled"] else "  DISABLED"
    out.print(f"{entry['policy_id']}  ({entry['path']}): {entry['description']}{state}", markup=False, highlight=False)
    for fire in entry["next_fires"]:
        local = "" if entry["timezone"] == "UTC" else f"  ({fire['local']} {entry['timezone']})"
        out.print(f"  next {fire['utc']}{local}", markup=False, highlight=False)
    last = entry["last_run"]
    if last is None:
        out.print("  last run: never", markup=False)
    else:
        took = f" in {last['duration_s']:g} s" if last["duration_s"] is not None else ""
        out.print(
            f"  last run: slot {last['scheduled_for']} {last['status']}{took} (run {last['run_id']})",
            markup=False,
            highlight=False,
        )
    for skipped in entry.get("skipped", []):
        if skipped["reason"] != "missed":
            out.print(f"  skipped slot {skipped['scheduled_for']}: {skipped['reason']}", markup=False, highlight=False)
    if entry["overdue"]:
        out.print("  OVERDUE: a slot is due and has not run", markup=False)


# -- history ----------------------------------------------------------------------------------


def export_folder(out: Path, policy_id: str, started_at: str) -> Path:
    """``OUT/<policy id>/<UTC start, 20261201T070002Z>``: the same run always goes to the same place."""
    from ..schedule import parse_slot

    moment = parse_slot(started_at)
    return out / policy_id / f"{moment:%Y%m%dT%H%M%SZ}"


@cli.command()
@click.argument("run_id")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to write into (a sub-folder per policy and run start time).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
@state_dir_option
@click.pass_context
def export(ctx: click.Context, run_id: str, out: Path, as_json: bool, state_dir: Path | None) -> None:
    """Write one run as plain files: summary.json and steps.jsonl."""
    from ..api import get_run, require_run

    store = _store(ctx, state_dir)
    row = require_run(store, run_id)
    result = get_run(store, row["id"])
    folder = export_folder(out, row["policy_id"], row["started_at"])
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        **result.to_dict(),
        "params": json.loads(row["params_json"]),
        "policy_hash": row["policy_hash"],
        "policy_path": row["policy_path"],
    }
    summary.pop("steps")
    summary_path = folder / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = []
    for step in store.get_steps(row["id"]):
        record = {k: v for k, v in step.items() if k not in ("output_json", "pending_state")}
        record["side_effects"] = bool(step["side_effects"])
        record["output"] = json.loads(step["output_json"]) if step["output_json"] else None
        lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False))
    steps_path = folder / "steps.jsonl"
    steps_path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if as_json:
        _dump({"run_id": row["id"], "summary": str(summary_path), "steps": str(steps_path)})
    else:
        stdout.print(f"wrote {summary_path}", markup=False, highlight=False)
        stdout.print(f"wrote {steps_path}", markup=False, highlight=False)


@cli.command("prune")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--policy", "policy_id", help="Only runs of this policy id.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as one JSON object.")
@state_dir_option
@click.pass_context
def prune_command(
    ctx: click.Context, dry_run: bool, policy_id: str | None, as_json: bool, state_dir: Path | None
) -> None:
    """Delete old runs by each policy's retention (or [retention] in the engine config)."""
    from ..config import EngineConfig
    from ..retention import prune as prune_runs
    from ..scheduler import utc_now

    store = _store(ctx, state_dir)
    result = prune_runs(store, config=EngineConfig.load(), now_utc=utc_now(), policy_id=policy_id, dry_run=dry_run)
    if as_json:
        _dump(result.to_dict(dry_run))
        return
    verb = "would remove" if dry_run else "removed"
    for run in result.runs:
        stdout.print(
            f"{verb} run {run['run_id']}  {run['policy_id']}  {run['status']}  started {run['started_at']}",
            markup=False,
            highlight=False,
        )
    stdout.print(
        f"{verb} {len(result.runs)} runs, {len(result.artifacts)} artifacts, {len(result.previews)} preview folders",
        markup=False,
    )
