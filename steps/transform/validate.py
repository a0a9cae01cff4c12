"""``transform.validate``: a pandera data gate, with the schema declared in the policy.

Three passes, each finding every failure at once: each declared column is first converted row by
row to its dtype (a value that does not convert is a failure of that row, not of the column);
then pandera checks nullability and the value checks on the converted rows, lazily; then the
``unique`` columns and keys are checked among the rows that passed, keeping the first (or last)
occurrence of a duplicate. Every failure becomes a reason a business reader understands
(:mod:`.checks`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine import Step, StepContext, StepError

from .checks import DTYPE_WORDS, CheckRule, build, requirement, show
from .frame import _to_bool, _to_decimal, as_frame

Dtype = Literal["int", "float", "str", "bool", "datetime", "date", "decimal", "any"]
Keep = Literal["first", "last", "none"]
_MAX_LISTED = 20


class _Failures:
    """The reasons of each failing row (by input position), and how often each failure occurs."""

    def __init__(self) -> None:
        self.reasons: dict[int, list[str]] = {}
        self.counts: Counter[str] = Counter()

    def add(self, row: int, failure: str, detail: str = "") -> None:
        reason = failure + detail
        if reason not in self.reasons.setdefault(row, []):
            self.reasons[row].append(reason)
            self.counts[failure] += 1


class ColumnRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dtype: Dtype = Field("any", description="Each value is converted to this type; one that does not convert fails.")
    nullable: bool = Field(False, description="Whether null values are allowed.")
    unique: bool = Field(False, description="Whether values must be unique in the column (see 'keep').")
    required: bool = Field(True, description="Whether the column must exist.")
    checks: list[CheckRule] | CheckRule = Field(
        default_factory=list,
        description='Value checks: [{"ge": 0}, {"isin": ["a", "b"]}]; each key of a check object is one '
        'check, so {"ge": 0, "le": 100} is two, and "checks": {"ge": 0, "le": 100} works too.',
    )

    @field_validator("checks")
    @classmethod
    def _one_or_many(cls, value: list[CheckRule] | CheckRule) -> list[CheckRule]:
        return [value] if isinstance(value, CheckRule) else value

    def check_items(self) -> list[tuple[str, Any]]:
        """``(kind, argument)`` of every check of the column, in order."""
        checks = [self.checks] if isinstance(self.checks, CheckRule) else self.checks
        return [item for check in checks for item in check.items()]


class ValidateStats(BaseModel):
    rows_in: int
    valid: int
    quarantined: int
    failures_by_check: dict[str, int] = Field(
        description="Failure, as in the reasons without the value (e.g. 'amount must be >= 0') -> failing rows."
    )


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
        keep: Keep = Field(
            "first",
            description="Which row of a duplicated unique key stays valid: first, last, or none (all are invalid).",
        )
        strict: bool = Field(False, description="Columns that are not declared are an error.")
        mode: Literal["fail", "quarantine"] = "fail"
        min_valid_ratio: float = Field(0.8, ge=0, le=1, description="Quarantine mode: the least share of valid rows.")

    class Output(BaseModel):
        valid: Any = Field(description="The valid rows, in the declared dtypes.")
        quarantine: Any = Field(description="The invalid rows as they came, with '_row' and '_reason' columns.")
        stats: ValidateStats

    def run(self, params: Params, ctx: StepContext) -> Output:
        frame = as_frame(params.input, "input").reset_index(drop=True)
        self._check_columns(frame, params)
        failures = _Failures()
        coerced = frame.copy()
        for name, rule in params.columns.items():
            if name in frame.columns and rule.dtype != "any":
                coerced[name] = self._coerce(frame[name], name, rule.dtype, failures)
        converted = coerced.drop(index=list(failures.reasons))
        self._pandera(converted, params, failures)
        self._unique(converted, params, failures)
        bad = sorted(failures.reasons)
        reasons = failures.reasons
        valid = coerced.drop(index=bad).reset_index(drop=True)
        quarantine = frame.loc[bad].copy()
        quarantine["_reason"] = ["; ".join(reasons[i]) for i in bad]
        quarantine = quarantine.reset_index(names="_row")
        counts = dict(sorted(failures.counts.items()))
        stats = ValidateStats(rows_in=len(frame), valid=len(valid), quarantined=len(bad), failures_by_check=counts)
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
                + ", ".join(f"{k} ({v} row{'s' if v != 1 else ''})" for k, v in counts.items()),
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
    def _coerce(series: Any, name: str, dtype: str, failures: _Failures) -> Any:
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
                failures.add(int(index), f"{name} must be {DTYPE_WORDS[dtype]}", f" (got {show(value)})")
                values.append(None)
        return pd.Series(values, index=series.index, dtype=object if dtype in ("decimal", "date") else None)

    @staticmethod
    def _pandera(frame: Any, params: Params, failures: _Failures) -> None:
        """Nullability and the value checks, by pandera; uniqueness is :meth:`_unique`'s."""
        import pandera.pandas as pa

        checks = {
            name: [item for check in rule.checks for item in check.items()] for name, rule in params.columns.items()
        }
        schema = pa.DataFrameSchema(
            {
                name: pa.Column(
                    None,
                    nullable=rule.nullable,
                    required=rule.required,
                    checks=[build(kind, arg) for kind, arg in checks[name]],
                )
                for name, rule in params.columns.items()
            }
        )
        try:
            schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            for case in exc.failure_cases.to_dict("records"):
                column, number, value = case["column"], case["check_number"], case["failure_case"]
                if case["check"] == "not_nullable":
                    failure, detail = f"{column} is missing", ""
                elif column in checks and number is not None and number == number:
                    failure, detail = f"{column} {requirement(*checks[column][int(number)])}", f" (got {show(value)})"
                else:  # nothing else is expected of pandera here; say it as it is
                    failure, detail = f"{column}: {case['check']}", f" (got {show(value)})"
                if case["index"] is None:
                    raise StepError(
                        f"{column}: cannot check '{failure.removeprefix(f'{column} ')}' on this column: {value} "
                        '(declare the column\'s dtype, e.g. "dtype": "decimal")',
                        retryable=False,
                    ) from exc
                failures.add(int(case["index"]), failure, detail)

    @staticmethod
    def _unique(frame: Any, params: Params, failures: _Failures) -> None:
        """Duplicated ``unique`` keys: with ``keep`` first (last), the first (last) occurrence that
        passed every other check stays valid; with ``none``, every occurrence is invalid."""
        keys = [[name] for name, rule in params.columns.items() if rule.unique and name in frame.columns]
        keys += [params.unique] if params.unique else []
        if not keys:
            return
        passed = frame.drop(index=[i for i in failures.reasons if i in frame.index])
        candidates = frame if params.keep == "none" else passed
        for columns in keys:
            rows: dict[tuple[Any, ...], list[int]] = {}
            for index, values in zip(candidates.index, candidates[columns].itertuples(index=False), strict=True):
                rows.setdefault(tuple(_hashable(v) for v in values), []).append(int(index))
            label = " + ".join(columns)
            for key, found in rows.items():
                if len(found) < 2:
                    continue
                shown = show(key[0]) if len(key) == 1 else show(key)
                for row in found:
                    if params.keep == "first" and row != found[0]:
                        where = f"first seen in row {found[0]}"
                    elif params.keep == "last" and row != found[-1]:
                        where = f"last seen in row {found[-1]}"
                    elif params.keep == "none":
                        others = [str(o) for o in found if o != row]
                        where = f"also in row{'s' if len(others) > 1 else ''} {', '.join(others)}"
                    else:
                        continue
                    failures.add(row, f"{label} is a duplicate", f" (got {shown}, {where})")


def _hashable(value: Any) -> Any:
    """A dict key for a cell: nulls are one key (as pandas' duplicated), unhashable cells by their repr."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


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
