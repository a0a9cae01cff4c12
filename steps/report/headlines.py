"""A built report's headline values, for a reader who cannot see the page (an agent, a summary):
each metric card's value against its comparison, and each conditional section shown or hidden
with the condition that decided it. Read from ``report.build``'s output (spec and snapshot)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _sections(sections: list[dict[str, Any]], base: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, section in enumerate(sections or []):
        pointer = f"{base}/{i}"
        yield pointer, section
        nested = section.get("sections")
        if isinstance(nested, list):
            yield from _sections(nested, f"{pointer}/sections")


def headlines(build: dict[str, Any]) -> dict[str, Any]:
    """``{"report_id", "title", "version", "metrics": [...], "conditional_sections": [...]}``."""
    spec = build.get("spec") or {}
    snapshot = build.get("snapshot") or {}
    values = snapshot.get("metrics") or {}
    decided = snapshot.get("conditions") or {}
    metrics = []
    conditional = []
    for pointer, section in _sections(spec.get("sections") or [], "/sections"):
        kind = section.get("type")
        if kind == "metric_card":
            metric = values.get(section.get("id"), {})
            metrics.append(
                {
                    "id": section.get("id"),
                    "label": section.get("label") or section.get("title") or section.get("id"),
                    "value": metric.get("value"),
                    "compare_to": metric.get("compare_to"),
                    "compare_label": section.get("compare_label"),
                    "delta": metric.get("delta"),
                    "delta_pct": metric.get("delta_pct"),
                    "status": metric.get("status"),
                    "format": (section.get("format") or {}).get("type"),
                }
            )
        elif kind == "conditional_section":
            shown = decided.get(f"{pointer}/condition")
            conditional.append(
                {
                    "pointer": pointer,
                    "title": section.get("title"),
                    "condition": section.get("condition"),
                    "shown": bool(shown),
                    "why": "its condition is true" if shown else "its condition is false",
                }
            )
    return {
        "report_id": build.get("report_id"),
        "title": build.get("title"),
        "version": build.get("version"),
        "metrics": metrics,
        "conditional_sections": conditional,
    }
