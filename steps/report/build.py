"""``report.build``: freeze the data a report shows into a versioned, hashed snapshot."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import Problem, Step, StepContext, StepError, check_condition, evaluate_condition

from . import snapshot as snap
from . import versions
from .spec import (
    AggregateValue,
    Chart,
    ConditionalSection,
    DataTable,
    MetricCard,
    PluginSection,
    Section,
    Text,
    walk_sections,
)

_SLUG = re.compile(r"[^a-z0-9]+")


class ReportOutput(BaseModel):
    report_id: str = Field(description="The report's id.")
    version: int = Field(description="1 for the first snapshot; +1 each time the snapshot hash changes.")
    hash: str = Field(description="SHA-256 of the snapshot's canonical JSON encoding.")
    new_version: bool = Field(description="Whether this run stored a new version (in a dry run: would store).")
    created_at: str = Field(description="When this version was first stored (UTC, ISO 8601).")
    title: str = Field(description="The report's title.")
    spec: dict[str, Any] = Field(description="The report spec without its data: layout, labels, formats.")
    snapshot: dict[str, Any] = Field(description="Every value the report shows, and the evaluated conditions.")


class ReportBuild(Step, type="report.build"):
    """Freeze the data a report shows into a versioned, hashed snapshot for the render steps.

    Sections are data tables, metric cards, charts, text and conditional sections. Each value the
    report uses is frozen as columnar JSON; conditions are evaluated against the snapshot. A new
    version is stored in the ``reports`` / ``report_versions`` tables only when the snapshot's
    SHA-256 changes. A dry run computes the snapshot and its version without storing it.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        report_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Stable id of the report.")
        title: str = Field(description="The report's title (a template works).")
        subtitle: str | None = Field(None, description="A line under the title (a template works).")
        author: str | None = Field(None, description="Written into the PDF's metadata and the page footer.")
        values: dict[str, Any] = Field(default_factory=dict, description="Extra values, frozen as ctx.values.NAME.")
        sections: list[Section] = Field(min_length=1, description="The report's body, in order.")

    Output = ReportOutput

    @classmethod
    def check(cls, params: dict[str, Any], where: Any) -> list[Problem]:
        problems: list[Problem] = []
        _check_conditions(params.get("sections"), "/sections", problems)
        return problems

    def run(self, params: Params, ctx: StepContext) -> ReportOutput:
        base = f"{ctx.pointer}/params"
        frozen = _Builder(params, base).build()
        digest = snap.sha256(frozen)
        spec = params.model_dump(mode="json", exclude={"values"})
        db = ctx.database(versions.metadata)
        if ctx.dry_run:
            version = versions.planned(db, params.report_id, digest)
        else:
            version = versions.record(
                db,
                report_id=params.report_id,
                title=params.title,
                digest=digest,
                snapshot=frozen,
                spec=spec,
                run_id=ctx.run_id,
                policy_id=ctx.policy_id,
            )
        ctx.log.info("report.built", report_id=params.report_id, version=version.number, new=version.new)
        return ReportOutput(
            report_id=params.report_id,
            version=version.number,
            hash=digest,
            new_version=version.new,
            created_at=version.created_at,
            title=params.title,
            spec=spec,
            snapshot=frozen,
        )


def _unwrap_literals(value: Any) -> Any:
    """Conditions as the step will see them: the engine unwraps ``{"literal": X}`` to ``X``."""
    if isinstance(value, dict):
        if len(value) == 1 and "literal" in value:
            return value["literal"]
        return {k: _unwrap_literals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_literals(v) for v in value]
    return value


def _check_conditions(sections: Any, pointer: str, problems: list[Problem]) -> None:
    """Parse every condition of the spec as written, so ``engine validate`` reports bad ones."""
    if not isinstance(sections, list):
        return
    for index, section in enumerate(sections):
        if not isinstance(section, dict):
            continue
        at = f"{pointer}/{index}"
        if section.get("type") == "conditional_section" and "condition" in section:
            problems += check_condition(_unwrap_literals(section["condition"]), f"{at}/condition")
            _check_conditions(section.get("sections"), f"{at}/sections", problems)
        for key in ("thresholds", "highlight"):
            rules = section.get(key)
            for i, rule in enumerate([rules] if isinstance(rules, dict) else rules or []):
                if isinstance(rule, dict) and "condition" in rule:
                    sub = f"{at}/{key}" if isinstance(rules, dict) else f"{at}/{key}/{i}"
                    problems += check_condition(_unwrap_literals(rule["condition"]), f"{sub}/condition")


class _Builder:
    """Builds the snapshot: metrics first (conditions may read any of them), then the rest."""

    def __init__(self, params: ReportBuild.Params, base: str) -> None:
        self.params = params
        self.base = base
        self.metrics: dict[str, dict[str, Any]] = {}
        self.sections: dict[str, dict[str, Any]] = {}
        self.conditions: dict[str, bool] = {}
        self.values = _to_json(params.values)

    def build(self) -> dict[str, Any]:
        cards = [(p, s) for p, s in walk_sections(self.params.sections) if isinstance(s, MetricCard)]
        for pointer, card in cards:
            self._metric(pointer, card)
        for pointer, card in cards:
            self._thresholds(pointer, card)
        self._visit(self.params.sections, "/sections")
        return {
            "report_id": self.params.report_id,
            "title": self.params.title,
            "subtitle": self.params.subtitle,
            "author": self.params.author,
            "values": self.values,
            "metrics": self.metrics,
            "sections": self.sections,
            "conditions": self.conditions,
        }

    def namespace(self, **extra: Any) -> dict[str, Any]:
        return {"metrics": self.metrics, "values": self.values, **extra}

    # -- sections ------------------------------------------------------------------------------

    def _visit(self, sections: list[Any], pointer: str) -> None:
        for index, section in enumerate(sections):
            at = f"{pointer}/{index}"
            if isinstance(section, ConditionalSection):
                shown = evaluate_condition(section.condition, self.namespace(), f"{self.base}{at}/condition")
                self.conditions[f"{at}/condition"] = shown
                self.sections[at] = {"type": section.type, "shown": shown}
                if shown:  # the sections of a hidden branch are not frozen
                    self._visit(section.sections, f"{at}/sections")
            elif isinstance(section, DataTable):
                self.sections[at] = self._table(at, section)
            elif isinstance(section, Chart):
                self.sections[at] = self._chart(at, section)
            elif isinstance(section, MetricCard):
                self.sections[at] = {"type": section.type, "metric": self._metric_id(at, section)}
            elif isinstance(section, Text):
                self.sections[at] = {"type": section.type, "body": section.body, "template": section.template}
            elif isinstance(section, PluginSection):
                entry: dict[str, Any] = {"type": section.type}
                if section.data is not None:
                    frame = self._frame(at, section)
                    entry["data"] = snap.freeze(frame, [str(c) for c in frame.columns])
                self.sections[at] = entry

    def _table(self, at: str, table: DataTable) -> dict[str, Any]:
        frame = self._frame(at, table)
        shown = [c.name for c in table.columns] if table.columns else [str(c) for c in frame.columns]
        for i, name in enumerate(shown):
            self._need(frame, name, at, table.type, f"/columns/{i}")
        if table.sort:
            for i, name in enumerate(table.sort.by):
                self._need(frame, name, at, table.type, f"/sort/by/{i}")
            frame = frame.sort_values(table.sort.by, ascending=not table.sort.descending, kind="stable")
        total = len(frame)
        if table.max_rows is not None:
            frame = frame.head(table.max_rows)
        styles: list[str | None] = []
        if table.highlight:
            for row in snap.records(snap.freeze(frame, [str(c) for c in frame.columns])):
                styles.append(self._row_style(at, table, row))
        return {
            "type": table.type,
            "data": snap.freeze(frame, shown),
            "total_rows": total,
            "row_styles": styles,
        }

    def _row_style(self, at: str, table: DataTable, row: dict[str, Any]) -> str | None:
        for i, rule in enumerate(table.highlight):
            where = f"{self.base}{at}/highlight/{i}/condition"
            if evaluate_condition(rule.condition, self.namespace(row=row), where):
                return rule.style
        return None

    def _chart(self, at: str, chart: Chart) -> dict[str, Any]:
        frame = self._frame(at, chart)
        used = [chart.x, *chart.y, *([chart.series] if chart.series else [])]
        for name, field in zip(used, ["/x", *[f"/y/{i}" for i in range(len(chart.y))], "/series"], strict=False):
            self._need(frame, name, at, chart.type, field)
        return {"type": chart.type, "data": snap.freeze(frame, list(dict.fromkeys(used)))}

    # -- metrics -------------------------------------------------------------------------------

    def _metric_id(self, at: str, card: MetricCard) -> str:
        return card.id or _SLUG.sub("_", card.label.lower()).strip("_") or f"metric_{at.split('/')[-1]}"

    def _metric(self, at: str, card: MetricCard) -> None:
        name = self._metric_id(at, card)
        if name in self.metrics:
            raise StepError(
                f"section {_index(at)} (metric_card): metric id {name!r} is used twice at {self.base}{at}; "
                "give the cards distinct 'id's",
                retryable=False,
            )
        value = self._number(at, card, card.value, "/value")
        compare = self._number(at, card, card.compare_to, "/compare_to")
        delta = delta_pct = None
        if value is not None and compare is not None:
            delta = value - compare
            delta_pct = (delta / abs(compare)) if compare else None
        self.metrics[name] = {
            "value": value,
            "compare_to": compare,
            "delta": delta,
            "delta_pct": delta_pct,
            "status": None,
        }

    def _thresholds(self, at: str, card: MetricCard) -> None:
        metric = self.metrics[self._metric_id(at, card)]
        for i, rule in enumerate(card.thresholds):
            key = f"{at}/thresholds/{i}/condition"
            holds = evaluate_condition(rule.condition, self.namespace(card=metric), self.base + key)
            self.conditions[key] = holds
            if holds:
                metric["status"] = rule.status
                break

    def _number(self, at: str, card: MetricCard, value: Any, field: str) -> Any:
        if value is None:
            return None
        if isinstance(value, dict) and {"data", "column"} <= set(value) and {"agg", "aggregate", "fn"} & set(value):
            value = AggregateValue.model_validate(value)
        if isinstance(value, AggregateValue):
            frame = snap.as_frame(value.data, f"section {_index(at)} (metric_card) {field}")
            self._need(frame, value.column, at, card.type, f"{field}/column")
            return snap.aggregate(frame, value.column, value.agg)
        number = snap.json_value(value)
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise StepError(
                f"section {_index(at)} (metric_card): {field.strip('/')} must be a number or "
                f'{{"data": ..., "column": ..., "agg": ...}}, not {type(value).__name__} at {self.base}{at}{field}',
                retryable=False,
            )
        return number

    # -- helpers -------------------------------------------------------------------------------

    def _frame(self, at: str, section: Any) -> Any:
        return snap.as_frame(section.data, f"section {_index(at)} ({section.type}) at {self.base}{at}/data")

    def _need(self, frame: Any, name: str, at: str, kind: str, field: str) -> None:
        if name in frame.columns:
            return
        import difflib

        available = [str(c) for c in frame.columns]
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise StepError(
            f"section {_index(at)} ({kind}): column {name!r} not found "
            f"(columns: {', '.join(available) or 'none'}){hint} at {self.base}{at}{field}",
            retryable=False,
        )


def _index(pointer: str) -> str:
    """``/sections/2/sections/0`` -> ``2.0``: the section's index as people count nested ones."""
    return ".".join(part for part in pointer.split("/") if part.isdigit())


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame
        return [_to_json(r) for r in value.to_dict(orient="records")]
    return snap.json_value(value)
