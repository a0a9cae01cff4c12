"""SVG drawings made on the server (no client-side diagram library): a policy's graph from its
plan's layers, coloured by step state when a run is given, and a Gantt of a run's steps."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from markupsafe import Markup

FILL = {
    "SUCCESS": "#dff3e5",
    "FAILED": "#fbe3e1",
    "RUNNING": "#e3eaff",
    "RETRYING": "#e3eaff",
    "SKIPPED": "#eef0f4",
    "PENDING": "#ffffff",
    "CANCELLED": "#fdf0d5",
}
STROKE = {
    "SUCCESS": "#1f7a3a",
    "FAILED": "#b3261e",
    "RUNNING": "#2f5bd3",
    "RETRYING": "#2f5bd3",
    "CANCELLED": "#9a6200",
}
BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 170, 40, 60, 18, 12


def graph_svg(steps: list[dict[str, Any]], states: dict[str, str] | None = None, title: str = "Policy graph") -> Markup:
    """``steps``: the plan's steps (``id``, ``type``, ``layer``, ``depends_on``); one column per
    layer, an arrow per dependency; with ``states`` (step id -> state) each box is coloured."""
    states = states or {}
    columns: dict[int, list[dict[str, Any]]] = {}
    first = min((int(step.get("layer", 0)) for step in steps), default=0)  # plans number layers from 1
    for step in steps:
        columns.setdefault(int(step.get("layer", 0)) - first, []).append(step)
    where: dict[str, tuple[int, int]] = {}
    for layer, members in sorted(columns.items()):
        for row, step in enumerate(members):
            where[step["id"]] = (PAD + layer * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y))
    width = PAD * 2 + (max(columns) + 1 if columns else 1) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + max((len(m) for m in columns.values()), default=1) * (BOX_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#8a94a6"/></marker></defs>',
    ]
    for step in steps:
        for upstream in step.get("depends_on") or []:
            if upstream in where and step["id"] in where:
                (x1, y1), (x2, y2) = where[upstream], where[step["id"]]
                parts.append(
                    f'<line x1="{x1 + BOX_W}" y1="{y1 + BOX_H / 2}" x2="{x2 - 2}" y2="{y2 + BOX_H / 2}" '
                    'stroke="#8a94a6" stroke-width="1.3" marker-end="url(#arrow)"/>'
                )
    for step in steps:
        x, y = where[step["id"]]
        state = states.get(step["id"])
        fill, stroke = FILL.get(state or "", "#ffffff"), STROKE.get(state or "", "#8a94a6")
        label = step["id"] if len(step["id"]) <= 22 else step["id"][:21] + "…"
        tip = f"{step['id']} ({step.get('type', '')})" + (f": {state}" if state else "")
        parts.append(
            f'<g class="node" data-step="{escape(step["id"])}" data-state="{escape(state or "")}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="{stroke}"/>'
            f'<text x="{x + 8}" y="{y + 17}" font-weight="600">{escape(label)}</text>'
            f'<text x="{x + 8}" y="{y + 32}" fill="#5b6575">{escape(_fit(str(step.get("type", "")), state))}'
            "</text></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _fit(kind: str, state: str | None, width: int = 24) -> str:
    """The box's second line: the step type, and its state when both fit in the box."""
    both = f"{kind} · {state}" if state else kind
    if len(both) <= width:
        return both
    return state if state else kind[: width - 1] + "…"


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def gantt_svg(steps: list[dict[str, Any]], title: str = "Step timeline") -> Markup:
    """A bar per step from its ``started_at`` to its ``finished_at`` (now while running)."""
    spans = []
    for step in steps:
        start, end = _time(step.get("started_at")), _time(step.get("finished_at"))
        if start is not None:
            spans.append((step, start, end))
    if not spans:
        return Markup('<p class="muted">No step has started yet.</p>')
    origin = min(s for _, s, _ in spans)
    now = dt.datetime.now(dt.UTC)
    last = max((e or now) for _, _, e in spans)
    total = max((last - origin).total_seconds(), 0.001)
    label_w, bar_w, row_h = 180, 560, 22
    height = PAD * 2 + len(spans) * row_h + 18
    width = label_w + bar_w + PAD * 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'
    ]
    for i, (step, start, end) in enumerate(spans):
        y = PAD + i * row_h
        x = label_w + (start - origin).total_seconds() / total * bar_w
        w = max(((end or now) - start).total_seconds() / total * bar_w, 2)
        state = step.get("status", "")
        took = ((end or now) - start).total_seconds()
        parts.append(
            f'<g data-step="{escape(step["id"])}"><text x="{PAD}" y="{y + 14}">{escape(step["id"][:24])}</text>'
            f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" rx="3" '
            f'fill="{FILL.get(state, "#eef0f4")}" stroke="{STROKE.get(state, "#8a94a6")}">'
            f"<title>{escape(step['id'])}: {took:.3f} s ({escape(state)})</title></rect></g>"
        )
    parts.append(
        f'<text x="{label_w}" y="{height - 4}" fill="#5b6575">0 s</text>'
        f'<text x="{label_w + bar_w}" y="{height - 4}" text-anchor="end" fill="#5b6575">{total:.2f} s</text></svg>'
    )
    return Markup("".join(parts))
