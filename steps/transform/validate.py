"""``transform.validate``: a pandera data gate, with the schema declared in the policy.

Two passes: each declared column is first coerced row by row to its dtype (a value that does
not convert is a failure of that row, not of the column), then pandera checks nullability,
uniqueness, value checks and frame-level unique keys on the coerced rows, lazily, so every
failure is found at once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine import Step, StepContext, StepError

from .frame import _to_bool, _to_decimal, as_frame

Dtype = Literal["int", "float", "str", "bool", "datetime", "date", "decimal", "any"]
_CHECKS = ("ge", "le", "gt", "lt", "in_range", "isin", "str_matches", "str_length")
_MAX_LISTED = 20


class CheckRule(BaseModel):
    """Exactly one of: ge, le, gt, lt, in_range [min, max], isin [...], str_matches REGEX, str_length [min, max]."""

    model_config = ConfigDict(extra="forbid")
    ge: Any = None
    le: Any = None
    gt: Any = None
    lt: Any = None
    in_range: tuple[Any, Any] | None = None
    isin: list[Any] | None = None
    str_matches: str | None = None
    str_length: tuple[int | None, int | None] | None = None

    @model_validator(mode="after")
    def _one(self) -> CheckRule:
        given = [name for name in _CHECKS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"a check sets exactly one of {', '.join(_CHECKS)} (this one sets {given or 'none'})")
        return self

    def build(self) -> Any:
        import pandera.pandas as pa

        name = next(n for n in _CHECKS if getattr(self, n) is not None)
        value = getattr(self, name)
        if name == "in_range":
            return pa.Check.in_range(value[0], value[1])
        if name == "str_length":
            return pa.Check.str_length(value[0], value[1])
        return getattr(pa.Check, name)(value)


class ColumnRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dtype: Dtype = Field("any", description="Each value is converted to this type; one that does not convert fails.")
    nullable: bool = Field(False, description="Whether null values are allowed.")
    unique: bool = Field(False, description="Whether values must be unique in the column.")
    required: bool = Field(True, description="Whether the column must exist.")
    checks: list[CheckRule] = Field(
        default_factory=list,
        description='Value checks: [{"ge": 0}, {"isin": ["a", "b"]}]; an object {"ge": 0, "le": 100} '
        "is read as one check per key.",
    )

    @model_validator(mode="before")
    @classmethod
    def _checks_object(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("checks"), dict):
            value = {**value, "checks": [{name: arg} for name, arg in value["checks"].items()]}
        return value


class ValidateStats(BaseModel):
    rows_in: int
    valid: int
    quarantined: int
    failures_by_check: dict[str, int] = Field(description="'column: check' -> number of failing rows.")


class TransformValidate(Step, type="transform.validate"):
    """A data gate: check a DataFrame against a schema declared in the policy (pandera).

    ``mode: fail`` fails the step on any violation, listing up to 20 failure cases.
    ``mode: quarantine`` moves invalid rows to the ``quarantine`` output with a reason per row,
    and fails only if the share of valid rows drops below ``min_valid_ratio``.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        input: Any = Field(description="A ref to a DataFrame or a list of records.")
        columns: dict[str, ColumnRule] = Field(description="Column name -> rule.")
        unique: list[str] | None = Field(None, description="Columns whose combination must be unique (frame level).")
        strict: bool = Field(False, description="Columns that are not declared are an error.")
        mode: Literal["fail", "quarantine"] = "fail"
        min_valid_ratio: float = Field(0.8, ge=0, le=1, description="Quarantine mode: the least share of valid rows.")

    class Output(BaseModel):
        valid: Any = Field(description="The valid rows, in the declared dtypes.")
        quarantine: Any = Field(description="The invalid rows as they came, with a '_reason' column.")
        stats: ValidateStats

    def run(self, params: Params, ctx: StepContext) -> Output:
        frame = as_frame(params.input, "input").reset_index(drop=True)
        self._check_columns(frame, params)
        reasons: dict[int, list[str]] = {}
        counts: Counter[str] = Counter()
        coerced = frame.copy()
        for name, rule in params.columns.items():
            if name in frame.columns and rule.dtype != "any":
                coerced[name] = self._coerce(frame[name], name, rule.dtype, reasons, counts)
        ok = coerced.drop(index=list(reasons))
        self._pandera(ok, params, reasons, counts)
        bad = sorted(reasons)
        valid = coerced.drop(index=bad).reset_index(drop=True)
        quarantine = frame.loc[bad].copy()
        quarantine["_reason"] = ["; ".join(reasons[i]) for i in bad]
        quarantine = quarantine.reset_index(names="_row")
        stats = ValidateStats(
            rows_in=len(frame), valid=len(valid), quarantined=len(bad), failures_by_check=dict(sorted(counts.items()))
        )
        if bad and params.mode == "fail":
            listed = [f"row {i}: {reason}" for i in bad for reason in reasons[i]][:_MAX_LISTED]
            more = sum(len(reasons[i]) for i in bad) - len(listed)
            raise StepError(
                f"{len(bad)} of {len(frame)} rows fail validation: "
                + "; ".join(listed)
                + (f"; and {more} more" if more > 0 else ""),
                retryable=False,
            )
        if len(frame) and len(valid) / len(frame) < params.min_valid_ratio:
            raise StepError(
                f"only {len(valid)} of {len(frame)} rows are valid ({len(valid) / len(frame):.0%}), "
                f"below min_valid_ratio {params.min_valid_ratio:.0%}: "
                + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())),
                retryable=False,
            )
        return self.Output(valid=valid, quarantine=quarantine, stats=stats)

    @staticmethod
    def _check_columns(frame: Any, params: Params) -> None:
        have = [str(c) for c in frame.columns]
        missing = [n for n, rule in params.columns.items() if rule.required and n not in frame.columns]
        extra = [c for c in have if c not in params.columns] if params.strict else []
        for key in params.unique or []:
            if key not in frame.columns and key not in missing:
                missing.append(key)
        if missing or extra:
            parts = ([f"missing columns {missing}"] if missing else []) + (
                [f"undeclared columns {extra} (strict)"] if extra else []
            )
            raise StepError(f"{'; '.join(parts)} (the frame has: {', '.join(have)})", retryable=False)

    @staticmethod
    def _coerce(series: Any, name: str, dtype: str, reasons: dict[int, list[str]], counts: Counter[str]) -> Any:
        import pandas as pd

        convert = _CONVERTERS[dtype]
        values = []
        for index, value in series.items():
            if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
                values.append(None)
                continue
            try:
                values.append(convert(value))
            except (ValueError, TypeError, ArithmeticError):
                reasons.setdefault(int(index), []).append(f"{name}: not {dtype} ({value!r})")
                counts[f"{name}: dtype {dtype}"] += 1
                values.append(None)
        return pd.Series(values, index=series.index, dtype=object if dtype in ("decimal", "date") else None)

    @staticmethod
    def _pandera(frame: Any, params: Params, reasons: dict[int, list[str]], counts: Counter[str]) -> None:
        import pandera.pandas as pa

        schema = pa.DataFrameSchema(
            {
                name: pa.Column(
                    None,
                    nullable=rule.nullable,
                    unique=rule.unique,
                    required=rule.required,
                    checks=[c.build() for c in rule.checks],
                )
                for name, rule in params.columns.items()
            },
            unique=params.unique,
        )
        try:
            schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            for case in exc.failure_cases.to_dict("records"):
                check = (
                    "unique" if case["check"] in ("field_uniqueness", "multiple_fields_uniqueness") else case["check"]
                )
                column = case["column"] if case["column"] is not None else "(frame)"
                if case["index"] is None:
                    raise StepError(
                        f"{column}: {check} failed for the whole column ({case['failure_case']})", retryable=False
                    ) from exc
                label = f"{column}: {check}"
                reasons.setdefault(int(case["index"]), []).append(f"{label} ({case['failure_case']!r})")
                counts[label] += 1


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value) if not isinstance(value, str) else int(value.strip())


def _to_datetime(value: Any) -> Any:
    import pandas as pd

    return pd.Timestamp(value).tz_localize("UTC") if pd.Timestamp(value).tzinfo is None else pd.Timestamp(value)


def _to_date(value: Any) -> Any:
    import pandas as pd

    return pd.Timestamp(value).date()


def _strict_bool(value: Any) -> bool:
    result = _to_bool(value)
    if result is None:
        raise ValueError(value)
    return bool(result)


_CONVERTERS = {
    "int": _to_int,
    "float": float,
    "str": str,
    "bool": _strict_bool,
    "datetime": _to_datetime,
    "date": _to_date,
    "decimal": _to_decimal,
}
