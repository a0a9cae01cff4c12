"""The policy registry: every distinct content of a policy is a numbered version.

A version is ``(policy_id, version, hash, document, created_at, created_by, source)``, numbered
1, 2, 3... per policy id. A new version is recorded only when the canonical content changes
(the policy hash); recording the same content again returns the version that has it. Each new
version is audited (``policy.version_added``), and a version whose only change is the
``schedule`` block is also audited as ``policy.schedule_changed``: it needs no new approval
(see :mod:`.approval`).
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..config import EngineConfig
from ..errors import NotFound
from ..policy import canonical_json, sha256_of
from . import audit, quotas
from .tables import policy_heads, policy_versions


def approval_hash(document: dict[str, Any]) -> str:
    """The hash an approver approves: the canonical policy without its ``schedule`` block.

    Everything that decides what a run does is in it (steps, params, defaults, sections); when
    the policy runs is not, so moving a report from 07:00 to 08:00 needs no new review."""
    return sha256_of({k: v for k, v in document.items() if k != "schedule"})


@dataclass(frozen=True)
class PolicyVersion:
    policy_id: str
    version: int
    hash: str
    approval_hash: str
    document: dict[str, Any]
    created_at: str
    created_by: str
    source: str
    new: bool = False  # recorded by this call

    def to_dict(self, with_document: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "policy_id": self.policy_id,
            "version": self.version,
            "hash": self.hash,
            "approval_hash": self.approval_hash,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "source": self.source,
        }
        if with_document:
            out["document"] = self.document
        return out


def _version(row: Any, new: bool = False) -> PolicyVersion:
    return PolicyVersion(
        row.policy_id,
        row.version,
        row.hash,
        row.approval_hash,
        json.loads(row.document),
        row.created_at,
        row.created_by,
        row.source,
        new,
    )


def record_version(
    engine: Engine,
    document: dict[str, Any],
    *,
    actor: str,
    source: str,
    config: EngineConfig | None = None,
    on_purpose: bool = False,
) -> PolicyVersion:
    """The version of ``document`` (a valid policy), recorded now if its content is new.

    ``on_purpose`` marks a version created by a person or program (``engine policy add``, the API,
    MCP): those count toward the ``policy_versions_per_day`` quota; a file that ``engine run`` or
    ``engine serve`` finds edited does not."""
    policy_id = str(document["id"])
    digest = sha256_of(document)
    existing = get_version_by_hash(engine, policy_id, digest)
    if existing is not None:
        if on_purpose:  # an earlier content given again on purpose becomes the current version
            _make_current(engine, existing, actor)
        return existing
    if on_purpose:
        quotas.use(engine, config or EngineConfig(), "policy_versions_per_day", actor, subject=policy_id)
    for attempt in range(50):
        try:
            return _insert(engine, document, policy_id, digest, actor, source)
        except sa.exc.IntegrityError:  # another process recorded a version at the same moment
            existing = get_version_by_hash(engine, policy_id, digest)
            if existing is not None:
                return existing
            time.sleep(0.002 * (attempt + 1))
    raise RuntimeError(f"could not record a version of policy {policy_id!r}: too many concurrent writers")


def _insert(
    engine: Engine, document: dict[str, Any], policy_id: str, digest: str, actor: str, source: str
) -> PolicyVersion:
    stamp = audit.utc_now()
    approve_by = approval_hash(document)
    with engine.begin() as conn:
        last = conn.execute(
            sa.select(policy_versions)
            .where(policy_versions.c.policy_id == policy_id)
            .order_by(policy_versions.c.version.desc())
            .limit(1)
        ).first()
        number = (last.version + 1) if last else 1
        head = conn.execute(
            sa.select(policy_heads.c.version).where(policy_heads.c.policy_id == policy_id)
        ).scalar_one_or_none()
        if head is not None:  # an earlier version was current: the new one follows it, not the newest
            last = conn.execute(
                sa.select(policy_versions).where(
                    policy_versions.c.policy_id == policy_id, policy_versions.c.version == head
                )
            ).first()
        conn.execute(policy_heads.delete().where(policy_heads.c.policy_id == policy_id))  # the new one is current
        conn.execute(
            policy_versions.insert().values(
                policy_id=policy_id,
                version=number,
                hash=digest,
                approval_hash=approve_by,
                document=canonical_json(document),
                created_at=stamp,
                created_by=actor,
                source=source,
            )
        )
        details = {"version": number, "hash": digest, "approval_hash": approve_by, "source": source}
        audit.append(conn, actor, "policy.version_added", policy_id, details, stamp)
        if last is not None:
            before = json.loads(last.document).get("schedule")
            after = document.get("schedule")
            if before != after:
                audit.append(
                    conn,
                    actor,
                    "policy.schedule_changed",
                    policy_id,
                    {
                        "version": number,
                        "from": before,
                        "to": after,
                        "needs_approval": last.approval_hash != approve_by,
                    },
                    stamp,
                )
        row = conn.execute(
            sa.select(policy_versions).where(
                policy_versions.c.policy_id == policy_id, policy_versions.c.version == number
            )
        ).one()
    return _version(row, new=True)


def get_version_by_hash(engine: Engine, policy_id: str, digest: str) -> PolicyVersion | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(policy_versions).where(policy_versions.c.policy_id == policy_id, policy_versions.c.hash == digest)
        ).first()
    return _version(row) if row else None


def _make_current(engine: Engine, version: PolicyVersion, actor: str) -> None:
    current = get_version(engine, version.policy_id)
    if current.version == version.version:
        return
    stamp = audit.utc_now()
    with engine.begin() as conn:
        conn.execute(policy_heads.delete().where(policy_heads.c.policy_id == version.policy_id))
        newest = conn.execute(
            sa.select(sa.func.max(policy_versions.c.version)).where(policy_versions.c.policy_id == version.policy_id)
        ).scalar_one()
        if version.version != newest:
            conn.execute(
                policy_heads.insert().values(
                    policy_id=version.policy_id, version=version.version, set_at=stamp, set_by=actor
                )
            )
        audit.append(
            conn,
            actor,
            "policy.version_restored",
            version.policy_id,
            {"from": current.version, "to": version.version, "hash": version.hash},
            stamp,
        )


def get_version(engine: Engine, policy_id: str, version: int | None = None) -> PolicyVersion:
    """Version ``version`` of the policy (the current one when None: the newest, unless an earlier
    content was recorded again on purpose), or a NotFound that says what exists."""
    if version is None:
        with engine.connect() as conn:
            version = conn.execute(
                sa.select(policy_heads.c.version).where(policy_heads.c.policy_id == policy_id)
            ).scalar_one_or_none()
    query = sa.select(policy_versions).where(policy_versions.c.policy_id == policy_id)
    query = (
        query.where(policy_versions.c.version == version)
        if version is not None
        else query.order_by(policy_versions.c.version.desc()).limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        known = versions(engine, policy_id)
        if not known:
            raise NotFound(
                f"no policy {policy_id!r} in the registry: record it with 'engine policy add FILE' "
                "(or run it once with 'engine run FILE'); 'engine policy list' shows what is there"
            )
        raise NotFound(f"policy {policy_id!r} has no version {version}: its versions are 1 to {known[-1].version}")
    return _version(row)


def versions(engine: Engine, policy_id: str) -> list[PolicyVersion]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(policy_versions)
            .where(policy_versions.c.policy_id == policy_id)
            .order_by(policy_versions.c.version)
        ).all()
    return [_version(r) for r in rows]


def policy_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                sa.select(policy_versions.c.policy_id).distinct().order_by(policy_versions.c.policy_id)
            )
        ]


def diff(old: PolicyVersion | None, new: PolicyVersion) -> str:
    """A unified diff of the canonical JSON (pretty-printed, keys sorted) of two versions."""

    def lines(v: PolicyVersion | None) -> list[str]:
        if v is None:
            return []
        return json.dumps(v.document, indent=2, sort_keys=True, ensure_ascii=False).splitlines(keepends=True)

    label_old = f"{old.policy_id} v{old.version} ({old.hash[:12]})" if old else "/dev/null"
    label_new = f"{new.policy_id} v{new.version} ({new.hash[:12]})"
    return "".join(difflib.unified_diff(lines(old), lines(new), label_old, label_new))


def latest_versions(engine: Engine) -> list[PolicyVersion]:
    """The current version of every policy (as :func:`get_version` with no version), by id."""
    newest = (
        sa.select(
            policy_versions.c.policy_id,
            sa.func.coalesce(sa.func.max(policy_heads.c.version), sa.func.max(policy_versions.c.version)).label("v"),
        )
        .select_from(policy_versions.outerjoin(policy_heads, policy_heads.c.policy_id == policy_versions.c.policy_id))
        .group_by(policy_versions.c.policy_id)
        .subquery()
    )
    query = (
        sa.select(policy_versions)
        .join(newest, (policy_versions.c.policy_id == newest.c.policy_id) & (policy_versions.c.version == newest.c.v))
        .order_by(policy_versions.c.policy_id)
    )
    with engine.connect() as conn:
        return [_version(r) for r in conn.execute(query)]
