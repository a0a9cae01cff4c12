"""The ``deliveries`` table and the dedup key: what makes sending idempotent.

One row per recipient (an email address, or a file path for ``send.file``) per delivery
attempt that reached a result: ``sent`` when the server accepted the message (or the file was
written), ``failed`` with the error, ``duplicate`` when an earlier ``sent`` row with the same
dedup key made the step send nothing.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from engine import StepContext, StepError

Status = Literal["sent", "failed", "duplicate"]

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
# not both find "not sent yet" and both send. A claim older than CLAIM_STALE_S is abandoned
# (its process died); the run that holds a claim may take it up again (a resume).
claims = sa.Table(
    "delivery_claims",
    metadata,
    sa.Column("dedup_key", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)
CLAIM_STALE_S = 900.0
CLAIM_WAIT_S = 120.0
CLAIM_POLL_S = 0.2


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
        self.db = ctx.database(metadata)
        self.run_id = ctx.run_id
        self.step_id = ctx.step_id
        self.channel = channel

    def find_sent(self, key: str) -> Sent | None:
        query = (
            sa.select(deliveries.c.run_id, deliveries.c.message_id, deliveries.c.sent_at)
            .where(deliveries.c.dedup_key == key, deliveries.c.status == "sent")
            .order_by(deliveries.c.id)
            .limit(1)
        )
        with self.db.connect() as conn:
            row = conn.execute(query).first()
        return Sent(row.run_id, row.message_id, row.sent_at) if row else None

    def claim(self, key: str) -> str | None:
        """Claim ``key`` for this run; returns None when claimed, else the run holding it."""
        now = time.time()
        try:
            with self.db.begin() as conn:
                row = conn.execute(sa.select(claims).where(claims.c.dedup_key == key)).first()
                if row is None:
                    conn.execute(claims.insert().values(dedup_key=key, run_id=self.run_id, claimed_at=now))
                elif row.run_id == self.run_id or now - row.claimed_at > CLAIM_STALE_S:
                    conn.execute(
                        claims.update().where(claims.c.dedup_key == key).values(run_id=self.run_id, claimed_at=now)
                    )
                else:
                    return str(row.run_id)
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
