"""The governance tables: policy versions, approvals, the audit chain and quota usage.

Created by the store's migration 5 (:mod:`engine.store`), with the triggers that make
``audit_log`` append-only. Only dialect-neutral SQLAlchemy, plus one trigger definition per
dialect (SQLite, PostgreSQL: :func:`create_triggers`). On PostgreSQL the triggers are looked up
on the ``audit_log`` table the search path finds (``'audit_log'::regclass``), not by name alone
across the database, so a second schema gets its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..store import portable_strings

metadata = sa.MetaData()

policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("policy_id", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False),  # the policy hash: the whole canonical document
    sa.Column("approval_hash", sa.String(64), nullable=False, index=True),  # without its schedule
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # file:<path>, cli, api, mcp
    sa.UniqueConstraint("policy_id", "hash", name="uq_policy_versions_hash"),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("policy_id", sa.String(200), nullable=False, index=True),
    sa.Column("approval_hash", sa.String(64), nullable=False),
    sa.Column("approved_by", sa.String(200), nullable=False),
    sa.Column("approved_at", sa.String(40), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("revoked_by", sa.String(200)),
    sa.Column("revoked_at", sa.String(40)),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False, index=True),
    sa.Column("subject", sa.String(200), nullable=False, index=True),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

quota_usage = sa.Table(
    "quota_usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("quota", sa.String(64), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("count", sa.Integer, nullable=False, default=1),
    sa.Index("ix_quota_usage_lookup", "quota", "actor", "at"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, index=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),  # never the token itself
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("workspace", sa.String(200), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.String(40)),
    sa.Column("revoked_at", sa.String(40)),
    sa.Column("revoked_by", sa.String(200)),
)

policy_archive = sa.Table(
    "policy_archive",
    metadata,
    sa.Column("policy_id", sa.String(200), primary_key=True),
    sa.Column("archived_at", sa.String(40), nullable=False),
    sa.Column("archived_by", sa.String(200), nullable=False),
)

# the current version of a policy when it is not its newest: content recorded again on purpose
# (an API PUT of an earlier document) makes that earlier version current without a new number
policy_heads = sa.Table(
    "policy_heads",
    metadata,
    sa.Column("policy_id", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("set_at", sa.String(40), nullable=False),
    sa.Column("set_by", sa.String(200), nullable=False),
)

# someone (an agent through MCP, an author) asks a person to approve a version: recorded, listed
# with the versions awaiting approval, audited; approving it stays a person's act
approval_requests = sa.Table(
    "approval_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("policy_id", sa.String(200), nullable=False, index=True),
    sa.Column("approval_hash", sa.String(64), nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("requested_at", sa.String(40), nullable=False),
    sa.Column("note", sa.Text),
)

portable_strings(metadata)  # VARCHAR without a length on PostgreSQL, as SQLite treats it

APPEND_ONLY_TRIGGERS = ("audit_log_no_update", "audit_log_no_delete")

_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS {name} BEFORE {verb} ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: entries cannot be changed or deleted'); END"""
    for name, verb in zip(APPEND_ONLY_TRIGGERS, ("UPDATE", "DELETE"), strict=True)
]

_POSTGRES_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'audit_log is append-only: entries cannot be changed or deleted'; END;
    $$ LANGUAGE plpgsql""",
    *(
        f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{name}' AND tgrelid = 'audit_log'::regclass) THEN
        CREATE TRIGGER {name} BEFORE {verb} ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
        END IF; END $$"""
        for name, verb in zip(APPEND_ONLY_TRIGGERS, ("UPDATE", "DELETE"), strict=True)
    ),
]


def create(conn: Connection) -> None:
    """Create the governance tables and the audit log's triggers (idempotent)."""
    metadata.create_all(conn, checkfirst=True)
    create_triggers(conn)
    columns = {c["name"] for c in sa.inspect(conn).get_columns("runs")}
    if "actor" not in columns:  # who started each run
        kind = "VARCHAR" if conn.dialect.name == "postgresql" else "VARCHAR(200)"  # see store.portable_strings
        conn.execute(sa.text(f"ALTER TABLE runs ADD COLUMN actor {kind}"))


def create_triggers(conn: Connection) -> None:
    statements = _POSTGRES_TRIGGERS if conn.dialect.name == "postgresql" else _SQLITE_TRIGGERS
    for statement in statements:
        conn.execute(sa.text(statement))


def missing_triggers(conn: Connection) -> list[str]:
    """The append-only triggers that are not in the database (someone dropped them)."""
    if conn.dialect.name == "postgresql":
        query = sa.text(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass "
            "AND tgname IN ('audit_log_no_update', 'audit_log_no_delete')"
        )
    else:
        query = sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'")
    present = {row[0] for row in conn.execute(query)}
    return [name for name in APPEND_ONLY_TRIGGERS if name not in present]
