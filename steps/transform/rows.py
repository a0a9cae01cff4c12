"""Row filters: the condition DSL with a column on the left, evaluated over a whole DataFrame.

    {"field": "amount", "op": "gt", "value": 100}
    {"all": [...]}  {"any": [...]}  {"not": ...}  true | false

The ops are the engine's (eq ne lt le gt ge in not_in contains exists is_empty not_empty).
A ``{"ref": ...}`` value has been resolved by the engine before the step runs.
"""

from __future__ import annotations

from typing import Any

_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "exists", "is_empty", "not_empty")


class RowConditionError(ValueError):
    """The row condition is malformed or names a missing column."""


_NEEDS_NO_VALUE = ("exists", "is_empty", "not_empty")


def shape_problems(condition: Any, pointer: str = "") -> list[tuple[str, str, str | None]]:
    """(pointer, message, hint) for each problem of a row condition's shape, checked without data
    (so ``engine validate`` reports them). Columns are checked when the step runs."""
    import difflib

    def near(word: str, choices: tuple[str, ...]) -> str | None:
        match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
        return f"did you mean {match[0]!r}?" if match else None

    if isinstance(condition, bool) or _is_expression(condition):
        return []
    if not isinstance(condition, dict):
        return [(pointer, "a condition is an object or true/false", None)]
    for key in ("all", "any"):
        if key in condition:
            items = condition[key]
            if not isinstance(items, list) or not items:
                return [(f"{pointer}/{key}", "must be a non-empty list of conditions", None)]
            return [p for i, item in enumerate(items) for p in shape_problems(item, f"{pointer}/{key}/{i}")]
    if "not" in condition:
        return shape_problems(condition["not"], f"{pointer}/not")
    problems: list[tuple[str, str, str | None]] = []
    for key in sorted(set(condition) - {"field", "op", "value"}):
        hint = near(key, ("field", "op", "value", "all", "any", "not"))
        problems.append(
            (
                f"{pointer}/{key}",
                f"unknown key {key!r} in a row comparison",
                hint or 'a row comparison is {"field": COLUMN, "op": OP, "value": ...}',
            )
        )
    if "field" not in condition:
        hint = "row filters name a column with 'field', not a 'ref'" if "ref" in condition else None
        problems.append((pointer, "a row comparison needs 'field' (the column)", hint))
    op = condition.get("op")
    if op not in _OPS:
        hint = near(op, _OPS) if isinstance(op, str) else None
        problems.append((f"{pointer}/op", f"unknown op {op!r}", hint or f"ops: {' '.join(_OPS)}"))
    elif op not in _NEEDS_NO_VALUE and "value" not in condition:
        problems.append((pointer, f"op {op!r} needs a 'value'", None))
    elif (
        op in ("in", "not_in")
        and not isinstance(condition.get("value"), list)
        and not _is_expression(condition.get("value"))
    ):
        problems.append((f"{pointer}/value", f"op {op!r} needs a list value", None))
    return problems


def _is_expression(value: Any) -> bool:
    from engine import is_expression

    return is_expression(value)


def row_mask(frame: Any, condition: Any, where: str = "condition") -> Any:
    """A boolean Series: which rows of ``frame`` the condition keeps."""
    import pandas as pd

    if isinstance(condition, bool):
        return pd.Series(condition, index=frame.index)
    if not isinstance(condition, dict):
        raise RowConditionError(f"{where}: a condition is an object or true/false")
    for key in ("all", "any"):
        if key in condition:
            items = condition[key]
            if not isinstance(items, list) or not items:
                raise RowConditionError(f"{where}.{key}: a non-empty list of conditions")
            masks = [row_mask(frame, item, f"{where}.{key}.{i}") for i, item in enumerate(items)]
            result = masks[0]
            for mask in masks[1:]:
                result = (result & mask) if key == "all" else (result | mask)
            return result
    if "not" in condition:
        return ~row_mask(frame, condition["not"], f"{where}.not")
    return _compare(frame, condition, where)


def _compare(frame: Any, condition: dict[str, Any], where: str) -> Any:
    unknown = set(condition) - {"field", "op", "value"}
    if unknown or "field" not in condition:
        raise RowConditionError(f'{where}: a row comparison is {{"field": COLUMN, "op": OP, "value": ...}}')
    field, op = condition["field"], condition.get("op")
    if field not in frame.columns:
        raise RowConditionError(f"{where}: column {field!r} not found (columns: {', '.join(map(str, frame.columns))})")
    if op not in _OPS:
        raise RowConditionError(f"{where}: unknown op {op!r} (ops: {' '.join(_OPS)})")
    column = frame[field]
    if op == "exists":
        return column.notna()
    empty = column.isna() | (column.astype("string") == "")
    if op == "is_empty":
        return empty
    if op == "not_empty":
        return ~empty
    if "value" not in condition:
        raise RowConditionError(f"{where}: op {op!r} needs a 'value'")
    value = condition["value"]
    if op in ("in", "not_in"):
        if not isinstance(value, list):
            raise RowConditionError(f"{where}: op {op!r} needs a list value")
        mask = column.isin(value)
        return mask if op == "in" else ~mask
    if op == "contains":
        return column.astype("string").str.contains(str(value), regex=False).fillna(False)
    compare = {
        "eq": column.__eq__,
        "ne": column.__ne__,
        "lt": column.__lt__,
        "le": column.__le__,
        "gt": column.__gt__,
        "ge": column.__ge__,
    }[op]
    try:
        return compare(value).fillna(False)
    except TypeError as exc:
        raise RowConditionError(f"{where}: cannot compare column {field!r} ({column.dtype}) with {value!r}") from exc
