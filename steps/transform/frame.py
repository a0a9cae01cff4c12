"""``transform.frame``: reshape a DataFrame with an ordered list of ops."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from engine import CheckContext, Problem, Step, StepContext, StepError, is_expression

from .expressions import ExpressionError, compile_expression, evaluate
from .rows import RowConditionError, row_mask, shape_problems


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Select(_Op):
    op: Literal["select"]
    columns: list[str] = Field(min_length=1, description="Columns to keep, in this order.")


class Rename(_Op):
    op: Literal["rename"]
    columns: dict[str, str] = Field(description="Old name -> new name.")


class MapFields(_Op):
    op: Literal["map_fields"]
    mapping: dict[str, str] = Field(description="Provider field name -> canonical name.")
    keep_unmapped: bool = Field(False, description="Keep the columns the mapping does not name.")


CastType = Literal["int", "float", "str", "bool", "datetime", "date", "decimal"]


class Cast(_Op):
    op: Literal["cast"]
    columns: dict[str, CastType] = Field(description="Column -> type. 'decimal' parses text exactly (money).")


class Filter(_Op):
    op: Literal["filter"]
    condition: Any = Field(description='A condition with {"field": COLUMN, "op": ..., "value": ...} comparisons.')


class Derive(_Op):
    op: Literal["derive"]
    column: str = Field(description="The new (or replaced) column.")
    expression: str = Field(description="Safe arithmetic over columns, e.g. 'round(price * qty, 2)'.")


class FillNull(_Op):
    op: Literal["fill_null"]
    columns: dict[str, Any] = Field(description="Column -> value to put where it is null.")


class Dedupe(_Op):
    op: Literal["dedupe"]
    keys: list[str] | None = Field(None, description="Key columns; all columns when omitted.")
    keep: Literal["first", "last"] = "first"


class Sort(_Op):
    op: Literal["sort"]
    by: list[str] = Field(min_length=1)
    descending: bool = False


class Limit(_Op):
    op: Literal["limit"]
    n: int = Field(ge=0)


Aggregate = Literal["sum", "mean", "min", "max", "count", "nunique", "first", "last"]


class AggregateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    fn: Aggregate = Field(validation_alias=AliasChoices("fn", "agg", "aggregate"))


class GroupBy(_Op):
    op: Literal["group_by"]
    keys: list[str] = Field(min_length=1)
    aggregate: dict[str, AggregateSpec] = Field(
        min_length=1,
        description='Output column -> {column, fn}; "amount": "sum" is short for {"column": "amount", "fn": "sum"}.',
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("aggregate"), dict):
            value = {
                **value,
                "aggregate": {
                    out: {"column": out, "fn": spec} if isinstance(spec, str) else spec
                    for out, spec in value["aggregate"].items()
                },
            }
        return value


class Join(_Op):
    op: Literal["join"]
    right: Any = Field(description="The other frame: a ref to a DataFrame or a list of records.")
    on: list[str] = Field(min_length=1)
    how: Literal["inner", "left", "outer"] = "inner"


class Pivot(_Op):
    op: Literal["pivot"]
    index: list[str] = Field(min_length=1)
    columns: str
    values: str
    fn: Aggregate = "sum"


Op = Annotated[
    Select | Rename | MapFields | Cast | Filter | Derive | FillNull | Dedupe | Sort | Limit | GroupBy | Join | Pivot,
    Field(discriminator="op"),
]


class TransformFrame(Step, type="transform.frame"):
    """Reshape a DataFrame with an ordered list of ops: select, rename, map_fields, cast, filter,
    derive, fill_null, dedupe, sort, limit, group_by (with aggregate), join and pivot.

    An op that names a missing column fails the step with the op's index and the columns that
    exist at that point.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        input: Any = Field(description="A ref to a DataFrame (e.g. ctx.orders.data) or a list of records.")
        ops: list[Op] = Field(default_factory=list, description="Applied in order.")

    class Output(BaseModel):
        data: Any = Field(description="The resulting DataFrame.")
        row_count: int
        columns: list[str]

    @classmethod
    def check(cls, params: dict[str, Any], where: CheckContext) -> list[Problem]:
        """Filter conditions and derive expressions are checked at validation time (their
        columns only when the data is there)."""
        ops = params.get("ops")
        if not isinstance(ops, list):
            return []
        problems = []
        for i, op in enumerate(ops):
            if not isinstance(op, dict):
                continue
            if op.get("op") == "filter" and "condition" in op:
                for pointer, message, hint in shape_problems(op["condition"], f"/ops/{i}/condition"):
                    problems.append(Problem(pointer, message, hint))
            expression = op.get("expression")
            if op.get("op") == "derive" and isinstance(expression, str) and not is_expression(expression):
                try:
                    compile_expression(expression, None)
                except ExpressionError as exc:
                    problems.append(Problem(f"/ops/{i}/expression", str(exc)))
        return problems

    def run(self, params: Params, ctx: StepContext) -> Output:
        frame = as_frame(params.input, "input")
        for index, op in enumerate(params.ops):
            where = f"op {index} ({op.op})"
            try:
                frame = _APPLY[op.op](frame, op)
            except _MissingColumns as exc:
                raise StepError(
                    f"{where}: column {exc.names} not found (columns: {', '.join(map(str, frame.columns))})"
                    f" at {ctx.pointer}/params/ops/{index}",
                    retryable=False,
                ) from None
            except (ExpressionError, RowConditionError, ValueError, TypeError, KeyError, ArithmeticError) as exc:
                raise StepError(f"{where}: {exc} at {ctx.pointer}/params/ops/{index}", retryable=False) from exc
        return self.Output(data=frame, row_count=len(frame), columns=[str(c) for c in frame.columns])


class _MissingColumns(Exception):
    def __init__(self, names: list[str]) -> None:
        self.names = names[0] if len(names) == 1 else names
        super().__init__(names)


def as_frame(value: Any, what: str) -> Any:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value.copy()
    if isinstance(value, list) and all(isinstance(r, dict) for r in value):
        return pd.DataFrame.from_records(value)
    hint = " (for a fetch step, use ctx.STEP.data)" if isinstance(value, dict) and "data" in value else ""
    raise StepError(
        f"{what} must be a DataFrame or a list of records, not {type(value).__name__}{hint}", retryable=False
    )


def _need(frame: Any, *names: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise _MissingColumns(missing)


def _select(frame: Any, op: Select) -> Any:
    _need(frame, *op.columns)
    return frame[op.columns]


def _rename(frame: Any, op: Rename) -> Any:
    _need(frame, *op.columns)
    return frame.rename(columns=op.columns)


def _map_fields(frame: Any, op: MapFields) -> Any:
    _need(frame, *op.mapping)
    renamed = frame.rename(columns=op.mapping)
    if op.keep_unmapped:
        return renamed
    return renamed[list(op.mapping.values())]


def _to_decimal(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError(f"cannot cast {value!r} to decimal")
    try:
        # text is parsed as written; a float goes through its shortest repr, never its binary value
        return Decimal(value if isinstance(value, str | int) else repr(value))
    except InvalidOperation:
        raise ValueError(f"cannot cast {value!r} to decimal") from None


def _cast(frame: Any, op: Cast) -> Any:
    import pandas as pd

    _need(frame, *op.columns)
    out = frame.copy()
    for column, kind in op.columns.items():
        series = out[column]
        if kind == "decimal":
            out[column] = series.astype(object).map(_to_decimal)
        elif kind == "int":
            out[column] = pd.to_numeric(series, errors="raise").astype("Int64")
        elif kind == "float":
            out[column] = pd.to_numeric(series, errors="raise").astype(float)
        elif kind == "str":
            out[column] = series.astype("string")
        elif kind == "bool":
            out[column] = series.map(_to_bool).astype("boolean")
        elif kind == "datetime":
            out[column] = pd.to_datetime(series, utc=True)
        else:
            out[column] = pd.to_datetime(series).dt.date
    return out


def _to_bool(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "t"):
        return True
    if text in ("false", "0", "no", "n", "f", ""):
        return False
    raise ValueError(f"cannot cast {value!r} to bool")


def _filter(frame: Any, op: Filter) -> Any:
    return frame[row_mask(frame, op.condition)].reset_index(drop=True)


def _derive(frame: Any, op: Derive) -> Any:
    tree = compile_expression(op.expression, [str(c) for c in frame.columns])
    out = frame.copy()
    out[op.column] = evaluate(tree, frame)
    return out


def _fill_null(frame: Any, op: FillNull) -> Any:
    _need(frame, *op.columns)
    return frame.fillna(value=op.columns)


def _dedupe(frame: Any, op: Dedupe) -> Any:
    if op.keys:
        _need(frame, *op.keys)
    return frame.drop_duplicates(subset=op.keys, keep=op.keep).reset_index(drop=True)


def _sort(frame: Any, op: Sort) -> Any:
    _need(frame, *op.by)
    return frame.sort_values(op.by, ascending=not op.descending, kind="stable").reset_index(drop=True)


def _limit(frame: Any, op: Limit) -> Any:
    return frame.head(op.n)


def _group_by(frame: Any, op: GroupBy) -> Any:
    _need(frame, *op.keys, *(spec.column for spec in op.aggregate.values()))
    named = {out: (spec.column, spec.fn) for out, spec in op.aggregate.items()}
    return frame.groupby(op.keys, sort=True, dropna=False).agg(**named).reset_index()


def _join(frame: Any, op: Join) -> Any:
    right = as_frame(op.right, "join.right")
    _need(frame, *op.on)
    missing = [c for c in op.on if c not in right.columns]
    if missing:
        raise ValueError(f"join.right lacks {missing} (it has: {', '.join(map(str, right.columns))})")
    return frame.merge(right, on=op.on, how=op.how, suffixes=("", "_right"))


def _pivot(frame: Any, op: Pivot) -> Any:
    _need(frame, *op.index, op.columns, op.values)
    table = frame.pivot_table(index=op.index, columns=op.columns, values=op.values, aggfunc=op.fn)
    table.columns = [str(c) for c in table.columns]
    return table.reset_index()


_APPLY: dict[str, Callable[[Any, Any], Any]] = {
    "select": _select,
    "rename": _rename,
    "map_fields": _map_fields,
    "cast": _cast,
    "filter": _filter,
    "derive": _derive,
    "fill_null": _fill_null,
    "dedupe": _dedupe,
    "sort": _sort,
    "limit": _limit,
    "group_by": _group_by,
    "join": _join,
    "pivot": _pivot,
}
