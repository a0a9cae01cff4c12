"""The ``reports`` and ``report_versions`` tables: a new version only when the snapshot hash changes.

The Document Versioning pattern: ``reports`` holds one row per report id with its latest version
and hash; ``report_versions`` keeps every version's snapshot, never updated.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("report_id", sa.Text, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("latest_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)

report_versions = sa.Table(
    "report_versions",
    metadata,
    sa.Column("report_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("snapshot_json", sa.Text, nullable=False),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("policy_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class Version:
    number: int
    hash: str
    created_at: str
    new: bool


def latest(db: sa.Engine, report_id: str) -> Version | None:
    with db.connect() as conn:
        row = conn.execute(
            sa.select(reports.c.latest_version, reports.c.latest_hash, reports.c.updated_at).where(
                reports.c.report_id == report_id
            )
        ).first()
    return Version(row[0], row[1], row[2], new=False) if row else None


def planned(db: sa.Engine, report_id: str, digest: str) -> Version:
    """The version this snapshot is (or would be), without writing: for dry runs."""
    current = latest(db, report_id)
    if current is not None and current.hash == digest:
        return current
    return Version((current.number if current else 0) + 1, digest, _now(), new=True)


def record(
    db: sa.Engine, *, report_id: str, title: str, digest: str, snapshot: Any, spec: Any, run_id: str, policy_id: str
) -> Version:
    """Store a new version if ``digest`` differs from the latest one; return the version either way.

    Two runs storing the same report at once: the loser of the race sees the key taken and
    tries again on top of the winner's version.
    """
    for attempt in range(3):
        try:
            return _record(db, report_id, title, digest, snapshot, spec, run_id, policy_id)
        except sa.exc.IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _record(
    db: sa.Engine, report_id: str, title: str, digest: str, snapshot: Any, spec: Any, run_id: str, policy_id: str
) -> Version:
    now = _now()
    with db.begin() as conn:
        row = conn.execute(
            sa.select(reports.c.latest_version, reports.c.latest_hash, reports.c.updated_at).where(
                reports.c.report_id == report_id
            )
        ).first()
        if row is not None and row[1] == digest:
            return Version(row[0], digest, row[2], new=False)
        number = (row[0] if row else 0) + 1
        conn.execute(
            report_versions.insert().values(
                report_id=report_id,
                version=number,
                hash=digest,
                snapshot_json=json.dumps(snapshot, sort_keys=True, ensure_ascii=False),
                spec_json=json.dumps(spec, sort_keys=True, ensure_ascii=False),
                run_id=run_id,
                policy_id=policy_id,
                created_at=now,
            )
        )
        values = {"title": title, "latest_version": number, "latest_hash": digest, "updated_at": now}
        if row is None:
            conn.execute(reports.insert().values(report_id=report_id, created_at=now, **values))
        else:
            conn.execute(reports.update().where(reports.c.report_id == report_id).values(**values))
    return Version(number, digest, now, new=True)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- reading (the server's /reports) ---------------------------------------------------------------


def list_reports(db: sa.Engine) -> list[dict[str, Any]]:
    """Every report with its latest version and hash, and the policy of that version."""
    query = (
        sa.select(reports, report_versions.c.policy_id, report_versions.c.run_id)
        .join(
            report_versions,
            (report_versions.c.report_id == reports.c.report_id)
            & (report_versions.c.version == reports.c.latest_version),
        )
        .order_by(reports.c.report_id)
    )
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def list_versions(db: sa.Engine, report_id: str) -> list[dict[str, Any]]:
    """The versions of one report, oldest first (without their snapshots); empty: no such report."""
    columns = [c for c in report_versions.c if c.name not in ("snapshot_json", "spec_json")]
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(*columns).where(report_versions.c.report_id == report_id).order_by(report_versions.c.version)
        ).mappings()
        return [dict(r) for r in rows]


def get_snapshot(db: sa.Engine, report_id: str, number: int) -> dict[str, Any] | None:
    """One version with its frozen data snapshot and the report spec, or None."""
    with db.connect() as conn:
        row = conn.execute(
            sa.select(report_versions).where(
                report_versions.c.report_id == report_id, report_versions.c.version == number
            )
        ).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["snapshot"] = json.loads(out.pop("snapshot_json"))
    out["spec"] = json.loads(out.pop("spec_json"))
    return out
