"""Human output: the live step table, run summaries, problems, run lists."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from ..states import StepState
from .summary import summary_lines

if TYPE_CHECKING:
    from rich.table import Table

    from ..api import RunResult
    from ..errors import Problem
    from ..runner import StepEvent

STATE_COLORS = {
    "PENDING": "dim",
    "RUNNING": "yellow",
    "SUCCESS": "green",
    "FAILED": "bold red",
    "SKIPPED": "bright_black",
    "CANCELLED": "magenta",
    "PARTIAL": "yellow",
}


class LiveTable:
    """A per-step status table that redraws while the run goes on (only on a terminal)."""

    def __init__(self, console: Console, step_ids: Sequence[str], title: str) -> None:
        self.console = console
        self.title = title
        self.rows: dict[str, dict[str, Any]] = {
            sid: {"status": "PENDING", "attempt": 0, "started": None, "duration": None, "note": ""} for sid in step_ids
        }
        from rich.live import Live

        self.live = Live(console=console, refresh_per_second=8, transient=False, get_renderable=self.render)

    def __enter__(self) -> LiveTable:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def observe(self, event: StepEvent) -> None:
        row = self.rows.setdefault(
            event.step_id, {"status": "PENDING", "attempt": 0, "started": None, "duration": None, "note": ""}
        )
        row["status"] = event.status.value
        row["attempt"] = event.attempt
        if event.status is StepState.RUNNING and row["started"] is None:
            row["started"] = time.monotonic()
        if event.duration_s is not None:
            row["duration"] = event.duration_s
        row["note"] = event.error or event.skip_reason or ""

    def render(self) -> Table:
        from rich.table import Table

        table = Table(title=self.title, title_justify="left", expand=False)
        table.add_column("step")
        table.add_column("state")
        table.add_column("attempt", justify="right")
        table.add_column("duration", justify="right")
        table.add_column("note", overflow="ellipsis", max_width=60, no_wrap=True)
        for sid, row in self.rows.items():
            duration = row["duration"]
            if duration is None and row["started"] is not None and row["status"] == "RUNNING":
                duration = time.monotonic() - row["started"]
            table.add_row(
                sid,
                Text(row["status"], style=STATE_COLORS.get(row["status"], "")),
                str(row["attempt"] or ""),
                _seconds(duration),
                row["note"],
            )
        return table


_CODE_SPAN = re.compile(r"``(.+?)``|`([^`]+)`")


def code_spans(text: str) -> Text:
    """A docstring line for the terminal: ``code`` (reStructuredText) and `code` shown as code, unquoted."""
    out = Text()
    end = 0
    for match in _CODE_SPAN.finditer(text):
        out.append(text[end : match.start()])
        out.append(match.group(1) or match.group(2), style="cyan")
        end = match.end()
    out.append(text[end:])
    return out


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def print_run_summary(console: Console, result: RunResult) -> None:
    """The summary on a terminal: the status in its colour, a red x before each failed step."""
    headline, *rest = summary_lines(result)
    style = STATE_COLORS.get(result.status, "")
    line = Text(headline)
    start = len(f"run {result.run_id} ")
    line.stylize("bold", 4, start - 1)
    line.stylize(style, start, start + len(result.status))
    console.print(line, highlight=False)
    for text in rest:
        styled = Text(text)
        if text.startswith("  x "):
            styled.stylize("red", 2, 3)
        console.print(styled, highlight=False)


def print_run_detail(console: Console, result: RunResult) -> None:
    console.print(
        f"run {result.run_id}  policy {result.policy_id}  status {result.status}  attempt {result.attempt}"
        f"  trigger {result.trigger}{'  dry run' if result.dry_run else ''}",
        highlight=False,
        markup=False,
    )
    console.print(f"started {result.started_at}  finished {result.finished_at or '-'}", highlight=False, markup=False)
    if result.scheduled_for:
        console.print(f"slot {result.scheduled_for}", highlight=False, markup=False)
    for resume in result.resumes:
        source = "the recorded policy" if resume["policy_source"] == "recorded" else resume["policy_source"]
        details = [f"with {source}"]
        if resume["changed"]:
            details.append(f"changed: {', '.join(resume['changed'])}")
        if resume["rerun"]:
            details.append(f"--rerun {', '.join(resume['rerun'])}")
        details.append(f"kept: {', '.join(resume['kept']) or 'nothing'}")
        console.print(
            f"attempt {resume['attempt']}: resumed {resume['resumed_at'][:19].replace('T', ' ')} " + "; ".join(details),
            highlight=False,
            markup=False,
        )
    if result.error:
        console.print(f"error: {result.error}", highlight=False, markup=False)
    if result.preview_dir:
        console.print(f"previews: {result.preview_dir}", highlight=False, markup=False)
    resumed = result.attempt > 1
    from rich.table import Table

    table = Table(expand=False)
    columns = ["step", "type", "state", "attempts", "duration", *(["ran in"] if resumed else []), "note"]
    for column in columns:
        table.add_column(column, justify="right" if column in ("attempts", "duration") else "left")
    for step in result.steps:
        name = step.id if step.phase == "main" else f"{step.id} (on_failure)"
        ran = []
        if resumed:  # which attempt of the run ran the step; "kept" when a resume kept its result
            if step.kept:
                ran = [f"attempt {step.run_attempt} (kept)"]
            elif step.status == "PENDING":
                ran = [""]
            else:
                ran = [f"attempt {step.run_attempt}"]
        table.add_row(
            name,
            step.type,
            Text(step.status, style=STATE_COLORS.get(step.status, "")),
            str(step.attempts),
            _seconds(step.duration_s),
            *ran,
            step.error or step.skip_reason or "",
        )
    console.print(table)
    if result.status in ("FAILED", "PARTIAL", "CANCELLED"):
        console.print(f"resume with: {result.resume_command()}", highlight=False, markup=False)


def print_problems(console: Console, source: str | None, problems: Sequence[Problem]) -> None:
    head = f"{source}: " if source else ""
    count = len(problems)
    console.print(f"{head}[bold red]{count} problem{'s' if count != 1 else ''}[/]", highlight=False)
    for problem in problems:
        text = Text(f"  {problem.where()}: ", style="cyan")
        text.append(problem.message)
        if problem.hint:
            text.append(f" ({problem.hint})", style="dim")
        console.print(text)


def print_runs(console: Console, rows: list[dict[str, Any]], filtered: bool = False, where: Any = None) -> None:
    if not rows:
        place = f" in {where}/" if where is not None else ""
        console.print(f"no runs match these filters{place}" if filtered else f"no runs yet{place}", markup=False)
        return
    from rich.table import Table

    table = Table(expand=False)
    for column in ("run id", "policy", "status", "attempt", "trigger", "slot", "started", "finished"):
        table.add_column(column)
    for row in rows:
        status = row["status"] + (" (dry run)" if row["dry_run"] else "")
        table.add_row(
            row["id"] or (row.get("error") or "")[:30],
            row["policy_id"],
            Text(status, style=STATE_COLORS.get(row["status"], "")),
            str(row["attempt"]),
            row["trigger"],
            (row["scheduled_for"] or "")[:16].replace("T", " "),
            row["started_at"][:19].replace("T", " "),
            (row["finished_at"] or "")[:19].replace("T", " "),
        )
    console.print(table)
