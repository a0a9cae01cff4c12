"""The report spec: the sections a report is made of, and how values are formatted.

These models are the ``sections`` of ``report.build``'s params. Data fields (``data``, a metric's
``value``) hold whatever the engine resolved a ref to (a DataFrame, a list of records, a number);
they are excluded from ``model_dump`` so the dumped spec is plain JSON describing the layout.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from engine import sandbox_environment

FormatType = Literal["auto", "text", "number", "integer", "percent", "currency", "date"]
Status = Literal["good", "warning", "bad", "info", "neutral"]
CHART_KINDS = ("line", "bar", "stacked_bar", "area", "pie", "scatter", "candlestick")
SECTION_TYPES = ("data_table", "metric_card", "chart", "text", "conditional_section")
_PLUGIN_NAME = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
Aggregate = Literal["sum", "mean", "min", "max", "count", "last"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Format(_Model):
    """How a value is written: ``"currency"`` or ``{"type": "currency", "currency": "EUR", "decimals": 0}``."""

    type: FormatType = Field("auto", description="auto, text, number, integer, percent, currency or date.")
    decimals: int | None = Field(None, ge=0, le=10, description="Digits after the point (number 2, percent 1).")
    currency: str = Field(
        "USD",
        pattern=r"^[A-Z]{3}$",
        validation_alias=AliasChoices("currency", "code"),
        description="ISO 4217 code for currency: USD, EUR, GBP... ('code' works too).",
    )
    date_format: str = Field("%Y-%m-%d", description="strftime pattern for date, e.g. '%d %b %Y'.")
    prefix: str = Field("", description="Text before the value.")
    suffix: str = Field("", description="Text after the value, e.g. ' units'.")


FormatValue = FormatType | Format
"""A format as written: ``"percent"`` or ``{"type": "percent", "decimals": 0}``."""


def as_format(value: Any) -> Any:
    return Format(type=value) if isinstance(value, str) else value


class Column(_Model):
    name: str = Field(description="The column of the data.")
    label: str | None = Field(None, description="The header; defaults to the name.")
    format: FormatValue = Field(default_factory=Format, description="How cells are written.")
    align: Literal["left", "right", "center"] | None = Field(
        None, validation_alias=AliasChoices("align", "alignment"), description="Defaults: numbers right, text left."
    )

    _format = field_validator("format")(classmethod(lambda cls, v: as_format(v)))


class Sort(_Model):
    by: list[str] = Field(min_length=1, description="Columns to sort by.")
    descending: bool = False


class Highlight(_Model):
    condition: Any = Field(description="A condition over the row: {'ref': 'ctx.row.COLUMN', ...}.")
    style: Status = Field("warning", description="good, warning, bad, info or neutral.")


class Threshold(_Model):
    condition: Any = Field(description="A condition; ctx.card.value, ctx.card.delta... read this card.")
    status: Status = Field(description="The card's colour when the condition holds: good, warning, bad, info.")


class AggregateValue(_Model):
    data: Any = Field(exclude=True, description="A ref to a DataFrame or records.")
    column: str = Field(description="The column aggregated.")
    agg: Aggregate = Field(
        validation_alias=AliasChoices("agg", "aggregate", "fn"),
        description="sum, mean, min, max, count or last ('aggregate' and 'fn' are accepted too).",
    )


class _Section(_Model):
    title: str | None = Field(None, description="A heading above the section.")


class DataTable(_Section):
    type: Literal["data_table"]
    data: Any = Field(exclude=True, description="A ref to a DataFrame or a list of records.")
    columns: list[str | Column] | None = Field(None, description="Columns shown, in order; all columns when omitted.")
    sort: Sort | None = None
    max_rows: int | None = Field(None, ge=1, description="Rows shown; a note says how many more there are.")
    highlight: list[Highlight] | Highlight = Field(
        default_factory=list, description="Row styles; the first that holds wins."
    )
    note: str | None = Field(None, description="A caption under the table.")

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: Any) -> Any:
        return None if value is None else [Column(name=c) if isinstance(c, str) else c for c in value]

    @field_validator("highlight")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, Highlight) else value


class MetricCard(_Section):
    type: Literal["metric_card"]
    id: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Name in ctx.metrics.")
    label: str
    value: Any = Field(exclude=True, description="A number (a ref), or {data, column, agg}.")
    format: FormatValue = Field(default_factory=Format)
    compare_to: Any = Field(None, exclude=True, description="A number (ref or literal), or {data, column, agg}.")
    compare_label: str | None = Field(None, description="E.g. 'vs last month'.")
    higher_is_better: bool = Field(True, description="Whether a rise is shown as good (green) or bad (red).")
    thresholds: list[Threshold] = Field(default_factory=list, description="Card colours; the first that holds wins.")

    _format = field_validator("format")(classmethod(lambda cls, v: as_format(v)))


class Chart(_Section):
    type: Literal["chart"]
    kind: str = Field(description="line, bar, stacked_bar, area, pie, scatter, candlestick, or a plugin's 'pkg.kind'.")
    data: Any = Field(exclude=True, description="A ref to a DataFrame or a list of records.")
    x: str = Field(description="The x column (labels for pie).")
    y: str | list[str] = Field(description="One or more value columns (candlestick: open, high, low, close).")
    series: str | None = Field(None, description="A column whose values split the data into series.")
    x_label: str | None = Field(None, validation_alias=AliasChoices("x_label", "x_title"), description="X axis title.")
    y_label: str | None = Field(None, validation_alias=AliasChoices("y_label", "y_title"), description="Y axis title.")
    y_format: FormatValue | None = Field(None, description="Format of the y axis ticks (percent, currency...).")
    height: int = Field(340, ge=150, le=1200, description="Height in pixels (CSS px).")

    _y_format = field_validator("y_format")(classmethod(lambda cls, v: as_format(v)))

    @field_validator("y")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if not value:
            raise ValueError("give at least one y column")
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        import re

        if value not in CHART_KINDS and not re.match(_PLUGIN_NAME, value):
            raise _unknown(
                f"unknown chart kind {value!r} (kinds: {', '.join(CHART_KINDS)}; "
                "a plugin's own kinds contain a dot, like 'acme.waterfall')",
                value,
                CHART_KINDS,
            )
        return value

    @model_validator(mode="after")
    def _shape(self) -> Chart:
        if self.kind == "candlestick" and len(self.y) != 4:
            raise ValueError("a candlestick chart takes y: [open, high, low, close]")
        if self.kind == "pie" and (len(self.y) != 1 or self.series):
            raise ValueError("a pie chart takes one y column and no series")
        if self.series and len(self.y) > 1:
            raise ValueError("give either several y columns or a series column, not both")
        return self


class Text(_Section):
    type: Literal["text"]
    body: str | None = Field(
        None,
        validation_alias=AliasChoices("body", "markdown"),
        description="Markdown (raw HTML is shown as text); a {'template': ...} works too.",
    )
    template: str | None = Field(
        None, description="A Jinja2 template over the snapshot (metrics, values, report), giving Markdown."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Text:
        if (self.body is None) == (self.template is None):
            raise ValueError(
                "a text section takes either 'body' (Markdown) or 'template' (Jinja2), not both or neither"
            )
        if self.template is not None:
            from jinja2 import TemplateSyntaxError

            try:
                sandbox_environment(immutable=False).parse(self.template)
            except TemplateSyntaxError as exc:
                raise ValueError(f"template syntax error on line {exc.lineno}: {exc.message}") from None
        return self


class ConditionalSection(_Section):
    type: Literal["conditional_section"]
    condition: Any = Field(description="A condition over the snapshot (docs/steps/report.md#conditions).")
    sections: list[Section] = Field(min_length=1)


class PluginSection(_Section):
    """A section type added by a plugin (its name contains a dot); its ``data``, if any, is frozen whole."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(json_schema_extra={"pattern": _PLUGIN_NAME}, description="The plugin's type, like 'acme.map'.")
    data: Any = Field(None, exclude=True)

    @field_validator("type")
    @classmethod
    def _dotted(cls, value: str) -> str:
        import re

        if not re.match(_PLUGIN_NAME, value):
            raise _unknown(
                f"unknown section type {value!r} (types: {', '.join(SECTION_TYPES)}; "
                "a plugin's own types contain a dot, like 'acme.map')",
                value,
                SECTION_TYPES,
            )
        return value


def _unknown(message: str, value: str, choices: tuple[str, ...]) -> PydanticCustomError:
    """A validation error whose problem carries "did you mean" (engine validation shows ctx's hint)."""
    match = difflib.get_close_matches(value, choices, n=1, cutoff=0.65)
    hint = f"did you mean {match[0]!r}?" if match else None
    return PydanticCustomError("unknown_choice", "{message}", {"message": message, "hint": hint})


def _section_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in SECTION_TYPES else "plugin"


Section = Annotated[
    Annotated[DataTable, Tag("data_table")]
    | Annotated[MetricCard, Tag("metric_card")]
    | Annotated[Chart, Tag("chart")]
    | Annotated[Text, Tag("text")]
    | Annotated[ConditionalSection, Tag("conditional_section")]
    | Annotated[PluginSection, Tag("plugin")],
    Discriminator(_section_tag),
]

ConditionalSection.model_rebuild()


def walk_sections(sections: list[Any], pointer: str = "/sections") -> list[tuple[str, Any]]:
    """Every section, depth first, with its pointer relative to the params (``/sections/2/sections/0``)."""
    found: list[tuple[str, Any]] = []
    for index, section in enumerate(sections):
        where = f"{pointer}/{index}"
        found.append((where, section))
        if isinstance(section, ConditionalSection):
            found.extend(walk_sections(section.sections, f"{where}/sections"))
    return found
