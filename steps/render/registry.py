"""The renderer registry: how each section type and chart kind is drawn.

A plugin adds a section type or a chart kind with a decorator, without touching the templates
of the others::

    from steps.render import chart_kind, section_renderer

    @chart_kind("waterfall")
    def waterfall(data, spec):            # data: {"column": [values...]}; spec: the chart's spec
        import plotly.graph_objects as go
        return [go.Waterfall(x=data[spec["x"]], y=data[spec["y"][0]])], {}

    @section_renderer("acme.notice", template="sections/acme.notice.html")
    def notice(section, frozen, doc):      # returns the variables the partial reads as ``section.*``
        return {"text": section["text"]}

A section renderer gets the section's spec (JSON), its frozen part of the snapshot, and the
document being rendered (:class:`steps.render.document.Document`); a chart kind gets the chart's
data as ``{column: values}`` and its spec, and returns Plotly traces and layout overrides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import RegistryError

SectionPrepare = Callable[[dict[str, Any], dict[str, Any], Any], dict[str, Any]]
ChartBuild = Callable[[dict[str, list[Any]], dict[str, Any]], tuple[list[Any], dict[str, Any]]]


@dataclass(frozen=True)
class SectionRenderer:
    type: str
    template: str
    prepare: SectionPrepare


_sections: dict[str, SectionRenderer] = {}
_charts: dict[str, ChartBuild] = {}


def section_renderer(type: str, template: str | None = None) -> Callable[[SectionPrepare], SectionPrepare]:
    """Register how a section type is drawn: a function for its variables and a partial template.

    ``template`` defaults to ``sections/<type>.html``, looked up in the policy's ``template_dir``
    first, then in the built-in templates.
    """

    def register(prepare: SectionPrepare) -> SectionPrepare:
        existing = _sections.get(type)
        if existing is not None and _name(existing.prepare) != _name(prepare):
            raise RegistryError(
                f"section type {type!r} has two renderers: {_name(existing.prepare)} and {_name(prepare)}"
            )
        _sections[type] = SectionRenderer(type, template or f"sections/{type}.html", prepare)
        return prepare

    return register


def chart_kind(kind: str) -> Callable[[ChartBuild], ChartBuild]:
    """Register a chart kind: a function from (data, spec) to (Plotly traces, layout overrides)."""

    def register(build: ChartBuild) -> ChartBuild:
        existing = _charts.get(kind)
        if existing is not None and _name(existing) != _name(build):
            raise RegistryError(f"chart kind {kind!r} is registered twice: {_name(existing)} and {_name(build)}")
        _charts[kind] = build
        return build

    return register


def get_section(type: str) -> SectionRenderer | None:
    return _sections.get(type)


def get_chart(kind: str) -> ChartBuild | None:
    return _charts.get(kind)


def section_types() -> list[str]:
    return sorted(_sections)


def chart_kinds() -> list[str]:
    return sorted(_charts)


def _name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"
