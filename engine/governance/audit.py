"""The audit log: an append-only hash chain of everything governance-relevant that happened.

Entry ``seq`` (1, 2, 3...) records ``at`` (UTC, ISO 8601), ``actor``, ``action``, ``subject``
(a policy id, a run id) and ``details`` (a JSON object), plus ``prev_hash`` (the previous
entry's hash; 64 zeros for the first) and ``hash``: the SHA-256 of the canonical JSON of the
object ``{"action", "actor", "at", "details", "prev_hash", "seq", "subject"}`` (keys sorted,
no whitespace, UTF-8, non-ASCII characters as they are). Changing, removing or reordering any
entry breaks every hash after it, so a copy of the head hash kept elsewhere (``engine audit
head``) proves the whole history up to it. Database triggers reject UPDATE and DELETE; a person
who drops them and edits the table is caught by :func:`verify`.

Appends are serialised by the primary key on ``seq``: two processes that read the same head
race to insert the next ``seq``, one wins, the other reads the new head and tries again, so
the chain stays linear. An append inside a transaction that already wrote (an approval, a new
version) holds the write lock, so it never has to retry. On PostgreSQL, where writers do not
lock the whole database, an append takes an advisory lock until its transaction ends
(:func:`engine.store.serialize`), with the same effect.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import redact
from ..policy import canonical_json
from ..store import serialize
from .tables import audit_log, missing_triggers

GENESIS = "0" * 64

ACTIONS = (
    "policy.version_added",
    "policy.schedule_changed",
    "policy.approved",
    "policy.revoked",
    "run.started",
    "run.finished",
    "run.refused",
    "slot.skipped",
    "delivery.sent",
    "quota.refused",
)


def utc_now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def entry_hash(
    seq: int, at: str, actor: str, action: str, subject: str, details: Mapping[str, Any], prev_hash: str
) -> str:
    """The hash of one entry: SHA-256 of its canonical JSON (see the module docstring)."""
    payload = {
        "action": action,
        "actor": actor,
        "at": at,
        "details": details,
        "prev_hash": prev_hash,
        "seq": seq,
        "subject": subject,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def append(
    conn: Connection, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None, at: str = ""
) -> AuditEntry:
    """Append one entry inside the caller's transaction (which should already hold the write lock).

    Secrets registered for redaction never reach ``details``."""
    clean = redact.redact_value(json.loads(canonical_json(dict(details or {}))))
    serialize(conn, "audit_log")  # PostgreSQL: one appender at a time, reading the committed head
    head = conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).first()
    seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
    stamp = at or utc_now()
    digest = entry_hash(seq, stamp, actor, action, subject, clean, prev)
    conn.execute(
        audit_log.insert().values(
            seq=seq,
            at=stamp,
            actor=actor,
            action=action,
            subject=subject,
            details=canonical_json(clean),
            prev_hash=prev,
            hash=digest,
        )
    )
    return AuditEntry(seq, stamp, actor, action, subject, clean, prev, digest)


def record(
    engine: Engine, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None, at: str = ""
) -> AuditEntry:
    """Append one entry in a transaction of its own, retrying when another process took the ``seq``."""
    for attempt in range(50):
        try:
            with engine.begin() as conn:
                return append(conn, actor, action, subject, details, at)
        except sa.exc.IntegrityError:
            time.sleep(0.002 * (attempt + 1))
    raise RuntimeError("could not append to the audit log: 50 tries lost the race for the next seq")


def _entry(row: Any) -> AuditEntry:
    try:
        details = json.loads(row.details)
    except ValueError:
        details = {"unreadable": row.details}
    return AuditEntry(row.seq, row.at, row.actor, row.action, row.subject, details, row.prev_hash, row.hash)


def entries(
    engine: Engine,
    *,
    policy_id: str | None = None,
    since: str | None = None,
    action: str | None = None,
    limit: int | None = None,
) -> list[AuditEntry]:
    """Entries in ``seq`` order; ``policy_id`` keeps those about the policy or one of its runs."""
    query = sa.select(audit_log).order_by(audit_log.c.seq)
    if since:
        query = query.where(audit_log.c.at >= since)
    if action:
        query = query.where(audit_log.c.action == action)
    with engine.connect() as conn:
        found = [_entry(row) for row in conn.execute(query)]
    if policy_id is not None:
        found = [e for e in found if e.subject == policy_id or e.details.get("policy_id") == policy_id]
    return found[-limit:] if limit else found


def head_in_reports(config: Any) -> bool:
    """``[governance] audit_head_in_reports``: report footers and emails carry the chain's head."""
    from ..errors import ConfigError

    value = config.section("governance").get("audit_head_in_reports", False)
    if not isinstance(value, bool):
        raise ConfigError(f"{config.where('governance')}: audit_head_in_reports must be true or false, not {value!r}")
    return value


def head(engine: Engine) -> tuple[int, str]:
    """``(seq, hash)`` of the newest entry; ``(0, GENESIS)`` for an empty log."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


@dataclass
class Verification:
    """What :func:`verify` found. ``ok`` when the chain is whole and the triggers are in place."""

    count: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)
    missing_triggers: list[str] = field(default_factory=list)
    expected_head_found: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and not self.missing_triggers and self.expected_head_found is not False

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.count,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "first_bad_seq": self.first_bad_seq,
            "problems": self.problems,
            "missing_triggers": self.missing_triggers,
        }


def _rows(conn: Connection, batch: int = 1000) -> Iterator[Any]:
    last = None
    while True:
        query = sa.select(audit_log).order_by(audit_log.c.seq).limit(batch)
        if last is not None:
            query = query.where(audit_log.c.seq > last)
        rows = conn.execute(query).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(engine: Engine, expected_head: str | None = None) -> Verification:
    """Recompute the chain from the first entry. Stops describing at the first broken entry.

    ``expected_head`` is a hash kept outside the database (``engine audit head``): the chain must
    still contain it, which also catches entries removed from the end."""
    result = Verification()
    prev = GENESIS
    with engine.connect() as conn:
        result.missing_triggers = missing_triggers(conn)
        if expected_head:
            result.expected_head_found = False
        for expected_seq, row in enumerate(_rows(conn), start=1):
            result.count += 1
            result.head_seq, result.head_hash = row.seq, row.hash
            if expected_head and row.hash.startswith(expected_head.lower()):
                result.expected_head_found = True
            if result.first_bad_seq is not None:
                continue
            problem = _check(row, expected_seq, prev)
            if problem:
                result.first_bad_seq = row.seq if row.seq == expected_seq else min(row.seq, expected_seq)
                result.problems.append(problem)
            prev = row.hash
    if result.missing_triggers:
        result.problems.append(
            "the append-only triggers are missing ("
            + ", ".join(result.missing_triggers)
            + "): someone dropped them; entries may have been changed since"
        )
    if result.expected_head_found is False:
        result.problems.append(
            f"the head you kept ({expected_head}) is not in the chain: entries were removed or rewritten"
        )
    return result


def _check(row: Any, expected_seq: int, prev: str) -> str | None:
    if row.seq != expected_seq:
        return (
            f"seq {expected_seq}: missing (the next entry is seq {row.seq}): entries were deleted"
            if row.seq > expected_seq
            else f"seq {row.seq}: out of order after seq {expected_seq - 1}"
        )
    if row.prev_hash != prev:
        return (
            f"seq {row.seq}: prev_hash {row.prev_hash[:16]}... does not match the hash of seq {row.seq - 1} "
            f"({prev[:16]}...): an entry before it was removed, changed or moved"
        )
    try:
        details = json.loads(row.details)
    except ValueError:
        return f"seq {row.seq}: details is not JSON: the entry was edited"
    digest = entry_hash(row.seq, row.at, row.actor, row.action, row.subject, details, row.prev_hash)
    if digest != row.hash:
        return (
            f"seq {row.seq}: the entry does not match its hash (recomputed {digest[:16]}..., stored "
            f"{row.hash[:16]}...): its at, actor, action, subject or details were edited"
        )
    return None
