"""``transform.store``: write a DataFrame into a SQLite table with a write disposition."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from engine import Step, StepContext, StepError

from .frame import as_frame

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DeriveKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str = Field(pattern=_IDENT.pattern, description="The key column to add (letters, digits and _).")
    from_: list[str] = Field(alias="from", min_length=1, description="Columns hashed (SHA-256 of 'a|b|c').")


class StoreOutput(BaseModel):
    database: str
    table: str
    disposition: str
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int = Field(description="merge: rows whose key existed with the same values.")
    rows_deleted: int = Field(description="replace: rows the table held before.")


class TransformStore(Step, type="transform.store"):
    """Write a DataFrame into a table of a SQLite database file: append, replace or merge (upsert).

    The table is created from the frame's columns on first write; new columns are added (nullable);
    a column whose type changes incompatibly is refused. Decimals are stored exactly, as text.
    A dry run previews the counts without writing.
    """

    side_effects = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)
        input: Any = Field(description="A ref to a DataFrame or a list of records.")
        database: str = Field(description="SQLite file (created if missing); relative to the policy's folder.")
        table: str = Field(pattern=_IDENT.pattern, description="Table name: letters, digits and _.")
        disposition: Literal["append", "replace", "merge"] = Field(
            "append",
            validation_alias=AliasChoices("disposition", "write_disposition"),
            description="append, replace or merge ('write_disposition' is accepted too).",
        )
        primary_key: list[str] | None = Field(None, description="merge: the key columns (ON CONFLICT target).")
        derive_key: DeriveKey | None = Field(None, description="Add a key column hashed from other columns.")

        @model_validator(mode="after")
        def _merge_needs_key(self) -> TransformStore.Params:
            if self.disposition == "merge" and not self.primary_key:
                raise ValueError("disposition 'merge' needs primary_key")
            return self

    Output = StoreOutput

    def run(self, params: Params, ctx: StepContext) -> StoreOutput:
        frame = self._frame(params)
        path = _path(params.database, ctx)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("BEGIN IMMEDIATE")
            try:
                counts = _write(conn, frame, params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()
        return StoreOutput(database=str(path), table=params.table, disposition=params.disposition, **counts)

    def preview(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        """The same counts, computed in a transaction that is rolled back."""
        frame = self._frame(params)
        path = _path(params.database, ctx)
        if not path.exists():
            counts = {"rows_inserted": len(frame), "rows_updated": 0, "rows_unchanged": 0, "rows_deleted": 0}
        else:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute("BEGIN")
                counts = _write(conn, frame, params)
            finally:
                conn.execute("ROLLBACK")
                conn.close()
        return {
            "database": str(path),
            "table": params.table,
            "disposition": params.disposition,
            "preview": True,
            **counts,
        }

    @staticmethod
    def _frame(params: Params) -> Any:
        frame = as_frame(params.input, "input")
        bad = [str(c) for c in frame.columns if not _IDENT.match(str(c))]
        if bad:
            raise StepError(f"column names must be letters, digits and _ to be stored: {bad}", retryable=False)
        if params.derive_key is not None:
            missing = [c for c in params.derive_key.from_ if c not in frame.columns]
            if missing:
                raise StepError(f"derive_key.from: columns {missing} not found", retryable=False)
            parts = frame[params.derive_key.from_].astype(str).agg("|".join, axis=1)
            frame[params.derive_key.column] = [hashlib.sha256(p.encode()).hexdigest() for p in parts]
        for key in params.primary_key or []:
            if key not in frame.columns:
                raise StepError(
                    f"primary_key column {key!r} not found (columns: {', '.join(frame.columns)})", retryable=False
                )
        if params.primary_key and frame.duplicated(subset=params.primary_key).any():
            dupes = frame[frame.duplicated(subset=params.primary_key, keep=False)][params.primary_key].head(3)
            raise StepError(
                f"the data has duplicate keys {params.primary_key}: {dupes.to_dict('records')}", retryable=False
            )
        return frame


def _path(database: str, ctx: StepContext) -> Path:
    path = Path(database).expanduser()
    return path if path.is_absolute() or ctx.policy_dir is None else ctx.policy_dir / path


def _sql_type(series: Any) -> str:
    kind = series.dtype.kind
    if kind in "iub":
        return "INTEGER"
    if kind == "f":
        return "REAL"
    return "TEXT"  # text, Decimals (exact), dates and times (ISO 8601)


def _value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _rows(frame: Any) -> list[tuple[Any, ...]]:
    return [tuple(_value(v) for v in row) for row in frame.itertuples(index=False, name=None)]


_COMPATIBLE = {("INTEGER", "REAL"), ("REAL", "INTEGER"), ("TEXT", "INTEGER"), ("TEXT", "REAL")}


def _write(conn: sqlite3.Connection, frame: Any, params: TransformStore.Params) -> dict[str, int]:
    table = params.table
    columns = [str(c) for c in frame.columns]
    types = {c: _sql_type(frame[c]) for c in columns}
    existing = {row[1]: (row[2] or "TEXT").upper() for row in conn.execute(f'PRAGMA table_info("{table}")')}
    deleted = 0
    if existing and params.disposition == "replace":
        deleted = conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
        conn.execute(f'DROP TABLE "{table}"')
        existing = {}
    if not existing:
        definitions = [f'"{c}" {types[c]}' for c in columns]
        if params.primary_key:
            definitions.append("PRIMARY KEY (" + ", ".join(f'"{k}"' for k in params.primary_key) + ")")
        conn.execute(f'CREATE TABLE "{table}" ({", ".join(definitions)})')
    else:
        for column in columns:
            if column not in existing:
                conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {types[column]}')
            elif existing[column] != types[column] and (existing[column], types[column]) not in _COMPATIBLE:
                raise StepError(
                    f"column {column!r} is {existing[column]} in table {table!r} but the data is {types[column]}: "
                    "refusing an incompatible type change (cast the column, or write to a new table)",
                    retryable=False,
                )
        if params.primary_key:
            keys = ", ".join(f'"{k}"' for k in params.primary_key)
            conn.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{table}__pk" ON "{table}" ({keys})')
    quoted = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    rows = _rows(frame)
    if params.disposition != "merge":
        conn.executemany(f'INSERT INTO "{table}" ({quoted}) VALUES ({marks})', rows)
        return {"rows_inserted": len(rows), "rows_updated": 0, "rows_unchanged": 0, "rows_deleted": deleted}
    assert params.primary_key is not None
    conn.execute(f'CREATE TEMP TABLE "_incoming" AS SELECT {quoted} FROM "{table}" WHERE 0')
    conn.executemany(f'INSERT INTO "_incoming" ({quoted}) VALUES ({marks})', rows)
    join = " AND ".join(f't."{k}" = i."{k}"' for k in params.primary_key)
    others = [c for c in columns if c not in params.primary_key]
    differs = " OR ".join(f't."{c}" IS NOT i."{c}"' for c in others) or "0"
    matched = conn.execute(f'SELECT COUNT(*) FROM "_incoming" i JOIN "{table}" t ON {join}').fetchone()[0]
    changed = conn.execute(f'SELECT COUNT(*) FROM "_incoming" i JOIN "{table}" t ON {join} WHERE {differs}').fetchone()[
        0
    ]
    keys = ", ".join(f'"{k}"' for k in params.primary_key)
    update = ", ".join(f'"{c}" = excluded."{c}"' for c in others)
    action = f"DO UPDATE SET {update}" if others else "DO NOTHING"
    conn.execute(
        f'INSERT INTO "{table}" ({quoted}) SELECT {quoted} FROM "_incoming" WHERE 1 ON CONFLICT ({keys}) {action}'
    )
    conn.execute('DROP TABLE "_incoming"')
    return {
        "rows_inserted": len(rows) - matched,
        "rows_updated": changed,
        "rows_unchanged": matched - changed,
        "rows_deleted": 0,
    }
