"""Who may do what: the four roles of API tokens, checked once for every face.

- ``viewer`` reads;
- ``author`` reads, creates and updates policies and schedules, dry-runs, triggers, resumes and
  cancels runs (real runs still need an approved version: :mod:`engine.governance.approval`);
- ``approver`` reads, approves and revokes (never its own version with ``separate_approver``);
- ``admin`` does everything, tokens and settings included.

The CLI's caller is an ``admin`` of its workspace: whoever has a shell on the state has it all.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Forbidden

ACTIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"viewer", "author", "approver", "admin"}),
    "write": frozenset({"author", "admin"}),  # policies, schedules
    "run": frozenset({"author", "admin"}),  # dry runs, runs, resume, cancel
    "approve": frozenset({"approver", "admin"}),
    "admin": frozenset({"admin"}),  # tokens, settings
}

_WHAT = {
    "read": "read",
    "write": "create or change policies and schedules",
    "run": "start, resume or cancel runs",
    "approve": "approve or revoke policy versions",
    "admin": "administer the server",
}


@dataclass(frozen=True)
class Caller:
    """Who asks: the actor recorded in the audit log and quotas, its role, its workspace."""

    actor: str
    role: str
    workspace: str

    def may(self, action: str) -> bool:
        return self.role in ACTIONS[action]


def require(caller: Caller, action: str) -> None:
    """Refuse (:class:`Forbidden`) an action the caller's role does not allow."""
    if not caller.may(action):
        allowed = " or ".join(sorted(ACTIONS[action]))
        raise Forbidden(
            f"{caller.actor} has role {caller.role}, which may not {_WHAT[action]}: that needs a token with role "
            f"{allowed} ('engine token create --role ...')"
        )
