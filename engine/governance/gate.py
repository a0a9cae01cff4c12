"""The gate every run passes, whichever face started it (CLI, scheduler, later the API and MCP).

Before a run is recorded: its policy content is recorded as a version (the registry), then,
for a real run, the version must be approved (when ``require_approval`` is on) and the actor
must be under ``runs_per_hour``. Dry runs are always allowed and count toward no quota. The
run's start and end are audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from ..config import EngineConfig
from . import approval, audit, quotas, registry


@dataclass(frozen=True)
class Admission:
    """What the gate decided for one run: who, which version, and its approval."""

    actor: str
    version: registry.PolicyVersion
    approval: approval.ApprovalState

    def audit_details(self, **extra: Any) -> dict[str, Any]:
        return {
            "policy_id": self.version.policy_id,
            "version": self.version.version,
            "approval_hash": self.version.approval_hash,
            **extra,
        }


def admit(
    engine: Engine,
    config: EngineConfig,
    document: dict[str, Any],
    *,
    actor: str,
    source: str,
    dry_run: bool,
    what: str = "run",
    default_required: bool = False,
) -> Admission:
    """Record the version; refuse a real run of an unapproved version or over the run quota."""
    version = registry.record_version(engine, document, actor=actor, source=source)
    if dry_run:
        return Admission(actor, version, approval.approval_of(engine, version.policy_id, version.approval_hash))
    state = approval.check_approved(
        engine, config, version, actor, what=what, subject=version.policy_id, default_required=default_required
    )
    quotas.use(engine, config, "runs_per_hour", actor, subject=version.policy_id)
    return Admission(actor, version, state)


def started(engine: Engine, admission: Admission, run_id: str, **details: Any) -> None:
    audit.record(engine, admission.actor, "run.started", run_id, admission.audit_details(**details))


def finished(engine: Engine, admission: Admission, run_id: str, status: str, **details: Any) -> None:
    audit.record(engine, admission.actor, "run.finished", run_id, admission.audit_details(status=status, **details))
