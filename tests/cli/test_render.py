"""Golden output of the live step table and the run summary, rendered at a fixed width."""

from __future__ import annotations

import io

from rich.console import Console

from engine.api import RunResult, StepSummary
from engine.cli.render import LiveTable, print_run_summary
from engine.runner import StepEvent
from engine.states import StepState


def console() -> Console:
    return Console(file=io.StringIO(), width=80, color_system=None, force_terminal=False)


def test_live_table_golden():
    out = console()
    table = LiveTable(out, ["fetch", "check", "send"], "run daily")
    table.observe(StepEvent("fetch", StepState.RUNNING, 1))
    table.observe(StepEvent("fetch", StepState.SUCCESS, 1, duration_s=0.25))
    table.observe(StepEvent("check", StepState.FAILED, 3, error="too few rows", duration_s=2.5))
    out.print(table.render())
    assert out.file.getvalue() == (
        "run daily                                              \n"
        "┏━━━━━━━┳━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━┓\n"
        "┃ step  ┃ state   ┃ attempt ┃ duration ┃ note         ┃\n"
        "┡━━━━━━━╇━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━┩\n"
        "│ fetch │ SUCCESS │       1 │   250 ms │              │\n"
        "│ check │ FAILED  │       3 │    2.5 s │ too few rows │\n"
        "│ send  │ PENDING │         │          │              │\n"
        "└───────┴─────────┴─────────┴──────────┴──────────────┘\n"
    )


def test_run_summary_names_failed_steps_and_how_to_resume():
    out = console()
    result = RunResult(
        run_id="20261123T000000-abcdef",
        policy_id="daily",
        status="FAILED",
        attempt=1,
        dry_run=False,
        trigger="manual",
        started_at="",
        finished_at="",
        error="step 'check' failed: too few rows",
        preview_dir=None,
        steps=[
            StepSummary("fetch", "SUCCESS", 1, 0.2, None, None),
            StepSummary("check", "FAILED", 3, 2.5, "too few rows", None),
            StepSummary("send", "PENDING", 0, None, None, None),
        ],
    )
    print_run_summary(out, result)
    assert out.file.getvalue().splitlines() == [
        "run 20261123T000000-abcdef FAILED: 1 failed, 1 pending, 1 success",
        "  x check: too few rows",
        "  error: step 'check' failed: too few rows",
        "  resume with: engine resume 20261123T000000-abcdef",
    ]
