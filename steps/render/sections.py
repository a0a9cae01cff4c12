"""The built-in section renderers: the variables each section's partial template reads."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from .fonts import value_size
from .formats import align_for, format_delta, format_value, is_number
from .registry import section_renderer

STATUS_LABELS = {"good": "On track", "warning": "Watch", "bad": "Action needed", "info": "Note", "neutral": ""}


@section_renderer("data_table")
def data_table(section: dict[str, Any], frozen: dict[str, Any], doc: Any) -> dict[str, Any]:
    data = frozen["data"]
    by_name = {c["name"]: c for c in section.get("columns") or []}
    heads, cells_by_column = [], []
    for name, dtype, values in zip(data["columns"], data["dtypes"], data["values"], strict=True):
        column = by_name.get(name, {"name": name, "label": None, "format": {}, "align": None})
        fmt = column.get("format") or {}
        align = column.get("align") or align_for(dtype, fmt)
        heads.append({"label": column.get("label") or name, "align": align})
        cells_by_column.append([format_value(v, fmt, dtype) for v in values])
    count = len(data["values"][0]) if data["values"] else 0
    styles = frozen.get("row_styles") or [None] * count
    rows = [
        {
            "cells": [{"text": col[r], "align": heads[i]["align"]} for i, col in enumerate(cells_by_column)],
            "style": styles[r],
        }
        for r in range(count)
    ]
    more = frozen["total_rows"] - count
    return {
        "heads": heads,
        "rows": rows,
        "more_rows": more,
        "total_rows": frozen["total_rows"],
        "note": section.get("note"),
    }


@section_renderer("metric_card")
def metric_card(section: dict[str, Any], frozen: dict[str, Any], doc: Any) -> dict[str, Any]:
    metric = doc.report["snapshot"]["metrics"][frozen["metric"]]
    fmt = section.get("format") or {}
    delta = metric.get("delta")
    direction = "flat"
    if is_number(delta) and delta != 0:
        direction = "up" if delta > 0 else "down"
    good = (direction == "up") == section.get("higher_is_better", True) if direction != "flat" else None
    status = metric.get("status")
    value = format_value(metric.get("value"), fmt)
    return {
        "id": frozen["metric"],
        "label": section["label"],
        "value": value,
        "value_size": value_size(value),
        "delta": format_delta(delta, metric.get("delta_pct"), fmt),
        "direction": direction,
        "arrow": {"up": "▲", "down": "▼", "flat": "■"}[direction],
        "tone": "neutral" if good is None else ("good" if good else "bad"),
        "compare": format_value(metric["compare_to"], fmt) if metric.get("compare_to") is not None else None,
        "compare_label": section.get("compare_label"),
        "status": status,
        "status_label": STATUS_LABELS.get(status or "", ""),
    }


@section_renderer("chart")
def chart(section: dict[str, Any], frozen: dict[str, Any], doc: Any) -> dict[str, Any]:
    return {"kind": section["kind"], "html": doc.chart_html(section, frozen)}


@section_renderer("text")
def text(section: dict[str, Any], frozen: dict[str, Any], doc: Any) -> dict[str, Any]:
    from markdown_it import MarkdownIt

    # html: False: raw HTML in the Markdown is shown as text, never passed through
    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    source = frozen.get("body")
    if frozen.get("template") is not None:
        source = doc.render_string(frozen["template"])
    return {"html": Markup(md.render(source or ""))}


@section_renderer("conditional_section")
def conditional_section(section: dict[str, Any], frozen: dict[str, Any], doc: Any) -> dict[str, Any]:
    return {"children": doc.sections(section["sections"], doc.pointer + "/sections")}
