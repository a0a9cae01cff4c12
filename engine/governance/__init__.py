"""Governance: who did what (actors), the policy registry with versions, approval of a version by its
content hash, the tamper-evident audit log and quotas.

Every face (the CLI now; the REST API, MCP and the web UI later) calls these functions, so each
rule is enforced once, here. They take the store's SQLAlchemy engine (``store.engine``) and the
engine configuration. See docs/governance.md.
"""

from .actors import current_actor as current_actor
from .approval import ApprovalState as ApprovalState
from .approval import approval_of as approval_of
from .approval import approval_required as approval_required
from .approval import approve as approve
from .approval import check_approved as check_approved
from .approval import revoke as revoke
from .audit import AuditEntry as AuditEntry
from .audit import Verification as Verification
from .quotas import use as use_quota
from .registry import PolicyVersion as PolicyVersion
from .registry import approval_hash as approval_hash
from .registry import diff as diff
from .registry import get_version as get_version
from .registry import record_version as record_version
from .registry import versions as versions

__all__ = [
    "ApprovalState",
    "AuditEntry",
    "PolicyVersion",
    "Verification",
    "approval_hash",
    "approval_of",
    "approval_required",
    "approve",
    "check_approved",
    "current_actor",
    "diff",
    "get_version",
    "record_version",
    "revoke",
    "use_quota",
    "versions",
]
