"""The ``fetch_cache`` table: HTTP responses kept for ``cache_ttl_s``, then revalidated.

One row per request key: a SHA-256 over the method, URL, query, body hash and request headers
(header values are hashed, never stored, since they may hold tokens). The body is an artifact
(content-addressed, stored once); the row keeps its SHA-256, the validators (``ETag``,
``Last-Modified``) and when it was stored. Only the host and path of the URL are kept, never the
query string, which may hold a key.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

fetch_cache = sa.Table(
    "fetch_cache",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("headers_json", sa.Text, nullable=False),  # response headers the step reads again (Link)
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("stored_at", sa.Float, nullable=False),  # epoch seconds of the last 200 or 304
)


@dataclass
class Entry:
    status_code: int
    content_type: str
    body_sha256: str
    headers: dict[str, str]
    etag: str | None
    last_modified: str | None
    stored_at: float

    def fresh(self, ttl_s: float, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) - self.stored_at < ttl_s

    def validators(self) -> dict[str, str]:
        """Conditional request headers for revalidation."""
        out = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out


def request_key(
    method: str, url: str, query: list[tuple[str, str]], body: bytes | None, headers: dict[str, str]
) -> str:
    parts = {
        "method": method.upper(),
        "url": url,
        "query": sorted(query),
        "body": hashlib.sha256(body).hexdigest() if body else None,
        "headers": sorted((k.lower(), hashlib.sha256(v.encode()).hexdigest()) for k, v in headers.items()),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def load(db: sa.Engine, key: str) -> Entry | None:
    with db.connect() as conn:
        row = conn.execute(sa.select(fetch_cache).where(fetch_cache.c.key == key)).mappings().first()
    if row is None:
        return None
    return Entry(
        status_code=row["status_code"],
        content_type=row["content_type"],
        body_sha256=row["body_sha256"],
        headers=json.loads(row["headers_json"]),
        etag=row["etag"],
        last_modified=row["last_modified"],
        stored_at=row["stored_at"],
    )


def save(db: sa.Engine, key: str, method: str, host: str, path: str, entry: Entry) -> None:
    values: dict[str, Any] = {
        "method": method,
        "host": host,
        "path": path,
        "status_code": entry.status_code,
        "content_type": entry.content_type,
        "body_sha256": entry.body_sha256,
        "headers_json": json.dumps(entry.headers),
        "etag": entry.etag,
        "last_modified": entry.last_modified,
        "stored_at": entry.stored_at,
    }
    for _ in range(2):  # two steps may store the same request at once: the second one updates
        try:
            with db.begin() as conn:
                updated = conn.execute(fetch_cache.update().where(fetch_cache.c.key == key).values(**values)).rowcount
                if not updated:
                    conn.execute(fetch_cache.insert().values(key=key, **values))
            return
        except sa.exc.IntegrityError:
            continue


def touch(db: sa.Engine, key: str, stored_at: float) -> None:
    """A 304: the stored body is good for another TTL."""
    with db.begin() as conn:
        conn.execute(fetch_cache.update().where(fetch_cache.c.key == key).values(stored_at=stored_at))
