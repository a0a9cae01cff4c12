"""The render cache: rendered artifacts by a key over everything that changes the output.

key = SHA-256 of (renderer and its version, report spec, snapshot hash and version, the hashes of
every template file in the search path, the render options). A hit returns the stored artifact
references without rendering, as long as their files are still in the artifact store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

render_cache = sa.Table(
    "render_cache",
    metadata,
    sa.Column("cache_key", sa.Text, primary_key=True),
    sa.Column("renderer", sa.Text, nullable=False),
    sa.Column("report_id", sa.Text, nullable=False),
    sa.Column("report_version", sa.Integer, nullable=False),
    sa.Column("output_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
)


def key(parts: dict[str, Any]) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def lookup(db: sa.Engine, cache_key: str) -> dict[str, Any] | None:
    """The stored output for ``cache_key``, or None (also when an artifact file has gone)."""
    with db.connect() as conn:
        row = conn.execute(sa.select(render_cache.c.output_json).where(render_cache.c.cache_key == cache_key)).first()
    if row is None:
        return None
    output: dict[str, Any] = json.loads(row[0])
    for ref in output.get("artifacts", []):
        path = Path(ref["path"])
        if not path.is_file() or path.stat().st_size != ref["size"]:
            return None
    return output


def store(db: sa.Engine, cache_key: str, renderer: str, report: dict[str, Any], output: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    values = {
        "renderer": renderer,
        "report_id": report["report_id"],
        "report_version": report["version"],
        "output_json": json.dumps(output, sort_keys=True),
        "created_at": now,
    }
    with db.begin() as conn:
        conn.execute(render_cache.delete().where(render_cache.c.cache_key == cache_key))
        conn.execute(render_cache.insert().values(cache_key=cache_key, **values))
