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
