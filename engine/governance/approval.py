"""Approval of a policy version by its content hash.

With ``[governance] require_approval = true`` a real run (not a dry run) of a policy whose
approval hash (:func:`.registry.approval_hash`: the canonical policy without ``schedule``) has no
standing approval is refused before anything is recorded, with exit code 4. An approver names
the exact hash they reviewed, as printed by ``engine plan``, ``engine run --dry-run`` and
``engine policy show``: a version that changed after the review has another hash, so it cannot
be approved by mistake. ``[governance] separate_approver = true`` forbids approving a version
you created.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..config import EngineConfig
from ..errors import ConfigError, Forbidden, NotApproved, NotFound, UsageError
from . import audit
from .registry import PolicyVersion, versions
from .tables import approval_requests, approvals

MIN_PREFIX = 12
_HEX = re.compile(r"^[0-9a-f]+$")


def _flag(config: EngineConfig, key: str, default: bool) -> bool:
    value = config.section("governance").get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{config.where('governance')}: {key} must be true or false, not {value!r}")
    return value


def approval_required(config: EngineConfig, default: bool = False) -> bool:
    """``[governance] require_approval`` (``default`` when unset: false on the command line)."""
    return _flag(config, "require_approval", default)


def separate_approver(config: EngineConfig) -> bool:
    return _flag(config, "separate_approver", False)


@dataclass(frozen=True)
class ApprovalState:
    hash: str
    approved: bool
    approved_by: str | None = None
    approved_at: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "approved": self.approved,
            "approved_by": self.approved_by,
            "approved_at": self.approved_at,
        }


def approval_of(engine: Engine, policy_id: str, approval_hash: str) -> ApprovalState:
    """The standing (not revoked) approval of ``approval_hash``, if any."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(approvals)
            .where(
                approvals.c.policy_id == policy_id,
                approvals.c.approval_hash == approval_hash,
                approvals.c.revoked_at.is_(None),
            )
            .order_by(approvals.c.id.desc())
            .limit(1)
        ).first()
    if row is None:
        return ApprovalState(approval_hash, False)
    return ApprovalState(approval_hash, True, row.approved_by, row.approved_at, row.note)


def approved_hashes(engine: Engine, policy_id: str) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(approvals.c.approval_hash).where(
                approvals.c.policy_id == policy_id, approvals.c.revoked_at.is_(None)
            )
        ).all()
    return {r[0] for r in rows}


def resolve_hash(engine: Engine, policy_id: str, text: str) -> tuple[str, list[PolicyVersion]]:
    """The full approval hash ``text`` names (all of it, or a unique prefix of >= 12 hex digits),
    with the versions that have it."""
    known = versions(engine, policy_id)
    if not known:
        raise NotFound(
            f"no policy {policy_id!r} in the registry: record it first with 'engine policy add FILE' "
            "(or 'engine run FILE --dry-run')"
        )
    wanted = text.strip().lower()
    if not _HEX.match(wanted) or len(wanted) < MIN_PREFIX:
        raise UsageError(
            f"--hash {text!r}: give the approval hash printed by 'engine plan' or 'engine policy show' "
            f"(64 hex digits, or a unique prefix of at least {MIN_PREFIX})"
        )
    matches = sorted({v.approval_hash for v in known if v.approval_hash.startswith(wanted)})
    if not matches:
        hint = ", ".join(f"v{v.version} {v.approval_hash[:MIN_PREFIX]}" for v in known[-5:])
        raise NotFound(
            f"policy {policy_id!r} has no version with approval hash {wanted}...; its latest: {hint} "
            f"('engine policy history {policy_id}' lists every one)"
        )
    if len(matches) > 1:
        raise UsageError(f"--hash {wanted} matches {len(matches)} versions of {policy_id!r}: give more digits")
    full = matches[0]
    return full, [v for v in known if v.approval_hash == full]


def approve(
    engine: Engine, config: EngineConfig, policy_id: str, hash_text: str, actor: str, note: str | None = None
) -> ApprovalState:
    """Approve the version(s) of ``policy_id`` with this approval hash (audited ``policy.approved``)."""
    full, matching = resolve_hash(engine, policy_id, hash_text)
    if separate_approver(config):
        own = [v for v in matching if v.created_by == actor]
        if own and len(own) == len(matching):
            raise Forbidden(
                f"{actor} created version {own[-1].version} of {policy_id!r} (hash {full[:MIN_PREFIX]}) and "
                "[governance] separate_approver is on: another person must approve it"
            )
    current = approval_of(engine, policy_id, full)
    if current.approved:
        return current
    stamp = audit.utc_now()
    with engine.begin() as conn:
        conn.execute(
            approvals.insert().values(
                policy_id=policy_id, approval_hash=full, approved_by=actor, approved_at=stamp, note=note
            )
        )
        audit.append(
            conn,
            actor,
            "policy.approved",
            policy_id,
            {"approval_hash": full, "versions": [v.version for v in matching], "note": note},
            stamp,
        )
    return ApprovalState(full, True, actor, stamp, note)


def revoke(engine: Engine, policy_id: str, hash_text: str, actor: str, note: str | None = None) -> ApprovalState:
    """Withdraw the approval of this hash (audited ``policy.revoked``); runs of it are refused again."""
    full, matching = resolve_hash(engine, policy_id, hash_text)
    stamp = audit.utc_now()
    with engine.begin() as conn:
        changed = conn.execute(
            approvals.update()
            .where(
                approvals.c.policy_id == policy_id,
                approvals.c.approval_hash == full,
                approvals.c.revoked_at.is_(None),
            )
            .values(revoked_by=actor, revoked_at=stamp)
        ).rowcount
        if not changed:
            raise UsageError(f"hash {full[:MIN_PREFIX]} of {policy_id!r} is not approved: nothing to revoke")
        audit.append(
            conn,
            actor,
            "policy.revoked",
            policy_id,
            {"approval_hash": full, "versions": [v.version for v in matching], "note": note},
            stamp,
        )
    return ApprovalState(full, False)


def approve_command(policy_id: str, approval_hash: str) -> str:
    return f"engine approve {shlex.quote(policy_id)} --hash {approval_hash}"


def check_approved(
    engine: Engine,
    config: EngineConfig,
    version: PolicyVersion,
    actor: str,
    *,
    what: str = "run",
    subject: str = "",
    default_required: bool = False,
) -> ApprovalState:
    """The approval of ``version``; with approval required and none standing, audit ``run.refused``
    and raise :class:`NotApproved` with the command that would approve it."""
    state = approval_of(engine, version.policy_id, version.approval_hash)
    if state.approved or not approval_required(config, default_required):
        return state
    reason = "not approved"
    audit.record(
        engine,
        actor,
        "run.refused",
        subject or version.policy_id,
        {
            "policy_id": version.policy_id,
            "version": version.version,
            "approval_hash": version.approval_hash,
            "reason": reason,
            "what": what,
        },
    )
    raise NotApproved(
        f"policy {version.policy_id!r} version {version.version} (approval hash {version.approval_hash}) is not "
        f"approved, and [governance] require_approval is on; it was created by {version.created_by} "
        f"({version.source}). Review it with 'engine policy show {version.policy_id}' or a dry run, then a "
        f"person approves it with: {approve_command(version.policy_id, version.approval_hash)}",
        policy_id=version.policy_id,
        approval_hash=version.approval_hash,
    )


def request(engine: Engine, policy_id: str, hash_text: str, actor: str, note: str | None = None) -> dict[str, Any]:
    """Ask a person to approve a version (audited ``approval.requested``). Approving stays a
    person's act: this only records who asks, for which hash, and why."""
    full, matching = resolve_hash(engine, policy_id, hash_text)
    current = approval_of(engine, policy_id, full)
    stamp = audit.utc_now()
    with engine.begin() as conn:
        conn.execute(
            approval_requests.insert().values(
                policy_id=policy_id, approval_hash=full, requested_by=actor, requested_at=stamp, note=note
            )
        )
        audit.append(
            conn,
            actor,
            "approval.requested",
            policy_id,
            {"approval_hash": full, "versions": [v.version for v in matching], "note": note},
            stamp,
        )
    return {
        "policy_id": policy_id,
        "hash": full,
        "versions": [v.version for v in matching],
        "requested_by": actor,
        "requested_at": stamp,
        "note": note,
        "approved": current.approved,
        "approve_command": approve_command(policy_id, full),
    }


def requests_for(engine: Engine, policy_id: str, approval_hash: str) -> list[dict[str, Any]]:
    """The approval requests of one version's hash, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(approval_requests)
            .where(approval_requests.c.policy_id == policy_id, approval_requests.c.approval_hash == approval_hash)
            .order_by(approval_requests.c.id)
        ).mappings()
        return [{"requested_by": r["requested_by"], "requested_at": r["requested_at"], "note": r["note"]} for r in rows]
