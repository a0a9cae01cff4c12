"""The ``deliveries`` table and the dedup key: what makes sending idempotent.

One row per recipient (an email address, or a file path for ``send.file``) per delivery
attempt that reached a result: ``sent`` when the server accepted the message (or the file was
written), ``failed`` with the error, ``duplicate`` when an earlier ``sent`` row with the same
dedup key made the step send nothing. ``send.email`` writes its rows as ``sending`` before it
talks to the server (a write-ahead claim) and turns them into ``sent`` or ``failed``; what the
server accepted is also in the journal (:mod:`.journal`), so that a database lock after
acceptance can neither lose it nor fail the step.

The dedup key is a SHA-256 over the policy id, the step id, the run's logical date (the
scheduled slot of a scheduled run, else the run id), the recipients and the content hash. A
resume keeps the run id, and a scheduler double-fire keeps the slot: either way the key is the
same and the report is not delivered twice. A manual run has no slot, so its key is its own and
every manual run delivers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from engine import StepContext, StepError
from engine.leases import Leases, unchanged

from .journal import NAME as JOURNAL_NAME
from .journal import Journal

Status = Literal["sent", "failed", "duplicate", "sending"]

metadata = sa.MetaData()
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("step_id", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("dedup_key", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("message_id", sa.Text),
    sa.Column("sent_at", sa.String(40)),
    sa.Column("error", sa.Text),
)


# Who is delivering a key right now: two runs for the same slot (a scheduler double-fire) must
# not both find "not sent yet" and both send. A claim carries a lease (engine.leases): ``owner``
# (host:pid) and ``expires_at``, renewed by the process's heartbeat while it lives. Another run
# takes the claim up only once the lease is over (its process died, on any host; on the same host
# a dead pid is seen at once). A claim from before leases (no expiry) is abandoned after
# CLAIM_STALE_S, or at once by the run that made it (a resume).
claims = sa.Table(
    "delivery_claims",
    metadata,
    sa.Column("dedup_key", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("owner", sa.String(255)),
    sa.Column("expires_at", sa.String(40)),
)
CLAIM_STALE_S = 900.0
CLAIM_WAIT_S = 120.0
CLAIM_POLL_S = 0.2
# How long a write after the server accepted waits for a database lock: the journal already
# holds the acceptance, so waiting longer only delays the step (the engine's own is 10 s).
RECORD_PATIENCE_S = 2.0
# What a `sending` row left by a process that died becomes (no journal entry: unknown outcome)
ABANDONED = (
    "the engine stopped while talking to the server; the server may have received the message "
    "(it was sent again: see 'Idempotency' in docs/steps/send.md)"
)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def logical_date(ctx: StepContext) -> str:
    """The scheduled slot of a scheduled run, else the run id (so a resume keeps the key)."""
    return str(ctx.run.get("scheduled_for") or ctx.run_id)


def content_hash(parts: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of what is delivered (subject, bodies, attachment hashes)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def dedup_key(ctx: StepContext, recipients: Mapping[str, Sequence[str]], content: str) -> str:
    """The key a ``sent`` record is looked up by; see the module docstring."""
    doc = {
        "policy_id": ctx.policy_id,
        "step_id": ctx.step_id,
        "logical_date": logical_date(ctx),
        "recipients": {kind: sorted(addresses) for kind, addresses in recipients.items()},
        "content": content,
    }
    return content_hash(doc)


@dataclass(frozen=True)
class Sent:
    """The earliest ``sent`` record of a key: what a duplicate points back to."""

    run_id: str
    message_id: str | None
    sent_at: str | None


class Deliveries:
    """Reads and writes of the ``deliveries`` table for one step (blocking: call from a thread)."""

    def __init__(self, ctx: StepContext, channel: str) -> None:
        with busy_database("nothing was delivered"):
            self.db = ctx.database(metadata)
        self.leases = ctx.leases if ctx.leases is not None else Leases(self.db)
        self.leases.hold(claims)
        self.run_id = ctx.run_id
        self.step_id = ctx.step_id
        self.channel = channel
        # the state directory (the artifact store is its "artifacts" folder)
        self.journal = Journal(ctx.artifacts.shared_dir / JOURNAL_NAME)

    def find_sent(self, key: str) -> Sent | None:
        """The earliest ``sent`` record of ``key``: in the table, else in the journal."""
        query = (
            sa.select(deliveries.c.run_id, deliveries.c.message_id, deliveries.c.sent_at)
            .where(deliveries.c.dedup_key == key, deliveries.c.status == "sent")
            .order_by(deliveries.c.id)
            .limit(1)
        )
        with self.db.connect() as conn:
            row = conn.execute(query).first()
        if row:
            return Sent(row.run_id, row.message_id, row.sent_at)
        entry = self.journal.find(key)
        return Sent(entry["run_id"], entry.get("message_id"), entry.get("sent_at")) if entry else None

    def claim(self, key: str) -> str | None:
        """Claim ``key`` for this run; returns None when claimed, else the run holding it."""
        values = {"run_id": self.run_id, "claimed_at": time.time(), **self.leases.lease()}
        try:
            with self.db.begin() as conn:
                row = conn.execute(sa.select(claims).where(claims.c.dedup_key == key)).first()
                if row is None:
                    conn.execute(claims.insert().values(dedup_key=key, **values))
                    return None
                # this run's own claim (a retry, or a resume of a run whose process held it before leases)
                ours = row.run_id == self.run_id and row.owner in (self.leases.owner, None)
                if not ours and not self.leases.expired(row, stale_s=CLAIM_STALE_S):
                    return str(row.run_id)
                taken = conn.execute(  # unless its holder renewed or another run took it since we looked
                    claims.update()
                    .where(
                        claims.c.dedup_key == key,
                        unchanged(claims.c.owner, row.owner),
                        claims.c.claimed_at == row.claimed_at,
                    )
                    .values(**values)
                )
                if taken.rowcount != 1:
                    return "another run"
        except (sa.exc.IntegrityError, sa.exc.OperationalError):
            return "another run"  # it wrote the claim between our read and our write
        return None

    def release(self, key: str) -> None:
        with self.db.begin() as conn:
            conn.execute(claims.delete().where(claims.c.dedup_key == key, claims.c.run_id == self.run_id))

    def record(
        self,
        key: str,
        status: Status,
        recipients: Iterable[str],
        *,
        message_id: str | None = None,
        sent_at: str | None = None,
        errors: Mapping[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        """One row per recipient; ``errors`` gives a recipient its own error (a refusal)."""
        rows = [
            {
                "run_id": self.run_id,
                "step_id": self.step_id,
                "channel": self.channel,
                "recipient": recipient,
                "dedup_key": key,
                "status": status,
                "message_id": message_id,
                "sent_at": sent_at,
                "error": (errors or {}).get(recipient, error),
            }
            for recipient in recipients
        ]
        if rows:
            with self.db.begin() as conn:
                conn.execute(deliveries.insert(), rows)

    # -- send.email's write-ahead rows -------------------------------------------------------

    def resolve_journal(self) -> int:
        """Write what the journal knows into the table; returns how many entries must wait."""
        return self.journal.resolve(self._apply)

    def open_sending(self, key: str, recipients: Iterable[str], message_id: str) -> None:
        """``sending`` rows for ``message_id``, committed before any byte goes to the server."""
        with busy_database("nothing was sent"):
            self.record(key, "sending", recipients, message_id=message_id)

    def close_failed(self, key: str, message_id: str, error: str) -> None:
        """The ``sending`` rows of a message the server did not accept become ``failed``."""
        with busy_database(f"nothing was sent; the error was: {error}"), self.db.begin() as conn:
            conn.execute(_sending(key, message_id).values(status="failed", error=error))

    def accepted(self, key: str, message_id: str, sent_at: str, sent: list[str], refused: dict[str, str]) -> bool:
        """Record the acceptance: the journal first (durable), then the table, waiting at most
        RECORD_PATIENCE_S for its lock. Returns False when the table must wait (the journal has it)."""
        entry = {
            "dedup_key": key,
            "run_id": self.run_id,
            "step_id": self.step_id,
            "channel": self.channel,
            "message_id": message_id,
            "sent_at": sent_at,
            "sent": sent,
            "refused": refused,
        }
        self.journal.append(entry)
        return self.resolve_journal() == 0

    def abandon_sending(self, key: str) -> int:
        """``sending`` rows of ``key`` left by a process that died before any outcome: ``failed``.

        Call it holding the key's claim (no live process sends it then), after
        :meth:`resolve_journal` (so an acceptance the journal knows is already ``sent``).
        """
        pending = [e.get("message_id") for e in self.journal.entries()]  # accepted, table still busy
        query = deliveries.update().where(
            deliveries.c.dedup_key == key, deliveries.c.status == "sending", deliveries.c.message_id.not_in(pending)
        )
        with busy_database("nothing was sent"), self.db.begin() as conn:
            return conn.execute(query.values(status="failed", error=ABANDONED)).rowcount or 0

    def _apply(self, entry: dict[str, Any]) -> None:
        """One journal entry into the table, idempotently: its ``sending`` rows become ``sent``
        (``failed`` for the refused), or ``sent`` rows are added when there are none."""
        key, message_id, refused = entry["dedup_key"], entry["message_id"], dict(entry.get("refused") or {})
        with _patience(self.db, RECORD_PATIENCE_S) as conn, conn.begin():
            done = conn.execute(
                sa.select(deliveries.c.id).where(deliveries.c.message_id == message_id, deliveries.c.status == "sent")
            ).first()
            if done is not None:
                return
            changed = conn.execute(
                _sending(key, message_id)
                .where(deliveries.c.recipient.not_in(list(refused)))
                .values(status="sent", sent_at=entry["sent_at"])
            ).rowcount
            for recipient, reply in refused.items():
                conn.execute(
                    _sending(key, message_id)
                    .where(deliveries.c.recipient == recipient)
                    .values(status="failed", error=reply)
                )
            if not changed:  # no sending rows (deleted by hand, or written elsewhere): add the sent ones
                base = {"run_id": entry["run_id"], "step_id": entry["step_id"], "channel": entry["channel"]}
                base.update(dedup_key=key, message_id=message_id, sent_at=entry["sent_at"], status="sent", error=None)
                rows = [{**base, "recipient": recipient} for recipient in entry["sent"]]
                if rows:
                    conn.execute(deliveries.insert(), rows)


def _sending(key: str, message_id: str) -> Any:
    return deliveries.update().where(
        deliveries.c.dedup_key == key, deliveries.c.message_id == message_id, deliveries.c.status == "sending"
    )


@contextmanager
def _patience(db: sa.Engine, seconds: float) -> Iterator[sa.Connection]:
    """A connection that waits at most ``seconds`` for a SQLite lock (then as before)."""
    with db.connect() as conn:
        if conn.dialect.name != "sqlite":
            yield conn
            return
        before = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(seconds * 1000)}")
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(before or 0)}")
            conn.commit()


@contextmanager
def busy_database(what: str) -> Iterator[None]:
    """A locked state database as a retryable StepError that says what did (not) happen."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig) if exc.orig is not None else str(exc)
        raise StepError(
            f"the state database is busy ({reason}: another process holds its lock); {what}", retryable=True
        ) from exc


def _busy(holder: str, key: str) -> StepError:
    return StepError(
        f"run {holder} has been delivering the same message (dedup key {key[:12]}...) for over "
        f"{CLAIM_WAIT_S:g} s; try again later (a resume will not send it twice)",
        retryable=True,
    )


async def claim_async(records: Deliveries, key: str) -> None:
    """Claim ``key``, waiting while another run delivers it (then it is usually a duplicate)."""
    deadline = time.monotonic() + CLAIM_WAIT_S
    while (holder := await asyncio.to_thread(records.claim, key)) is not None:
        if time.monotonic() > deadline:
            raise _busy(holder, key)
        await asyncio.sleep(CLAIM_POLL_S)


def claim_blocking(records: Deliveries, key: str) -> None:
    """:func:`claim_async` for plain (threaded) steps."""
    deadline = time.monotonic() + CLAIM_WAIT_S
    while (holder := records.claim(key)) is not None:
        if time.monotonic() > deadline:
            raise _busy(holder, key)
        time.sleep(CLAIM_POLL_S)


def ledger(
    db: sa.Engine,
    runs_table: sa.Table,
    *,
    policy_id: str | None = None,
    status: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The delivery ledger, newest first: each recipient's delivery with its run's policy and slot."""
    query = (
        sa.select(
            deliveries,
            runs_table.c.policy_id,
            runs_table.c.scheduled_for,
            runs_table.c.dry_run,
        )
        .join(runs_table, runs_table.c.id == deliveries.c.run_id)
        .order_by(deliveries.c.id.desc())
        .limit(limit)
    )
    if policy_id:
        query = query.where(runs_table.c.policy_id == policy_id)
    if status:
        query = query.where(deliveries.c.status == status)
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
