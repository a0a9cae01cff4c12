"""The run summary as plain text: what `engine run` prints when its output is not a terminal.

Kept apart from :mod:`.render` (rich) so that printing it imports nothing heavy: a run started by
cron or a script pays no start-up for a terminal it does not have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..api import RunResult


def summary_lines(result: RunResult) -> list[str]:
    """The run summary as plain text lines: the headline, failed steps, error, previews, hints."""
    counts: dict[str, int] = {}
    for step in result.steps:
        counts[step.status] = counts.get(step.status, 0) + 1
    parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    dry = " (dry run)" if result.dry_run else ""
    lines = [f"run {result.run_id} {result.status}{dry}: {parts}"]
    lines += [f"  x {step.id}: {step.error}" for step in result.steps if step.status == "FAILED"]
    if result.error and result.status != "SUCCESS":
        lines.append(f"  error: {result.error}")
    if result.preview_dir:
        lines.append(f"  previews: {result.preview_dir}")
    if result.dry_run and result.approval is not None:
        approval = result.approval
        state = f"approved by {approval['approved_by']}" if approval["approved"] else "not approved"
        lines.append(f"  approval hash: {approval['hash']} ({state})")
    if result.status in ("FAILED", "PARTIAL", "CANCELLED"):
        hint = result.resume_command()
        if result.policy_file_changed:
            hint += "  (the policy file has changed since this run started)"
        lines.append(f"  resume with: {hint}")
    return lines


def write_run_summary(stream: Any, result: RunResult) -> None:
    """The summary off a terminal: plain lines, without importing rich (start-up)."""
    stream.write("".join(line + "\n" for line in summary_lines(result)))
    stream.flush()
