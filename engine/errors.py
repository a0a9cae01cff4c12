"""The engine's exceptions: one hierarchy, each class with its CLI exit code.

    EngineError                 base of everything the engine raises on purpose
    ├── PolicyError             the policy (or a --param) is invalid; carries every Problem   exit 2
    ├── UsageError              a command was called wrongly (unknown run id, bad flag value)  exit 2
    ├── RegistryError           a step type is registered twice, or a plugin cannot be loaded  exit 2
    ├── ResumeError             a run cannot be resumed (e.g. it already succeeded)           exit 2
    ├── ConfigError             the engine configuration (engine.toml, ENGINE_*) is invalid   exit 2
    ├── GovernanceError         a rule of governance refused the action                       exit 4
    │   ├── NotApproved         a real run of a policy version nobody approved (by its hash)
    │   └── QuotaExceeded       an actor used up a quota ([quotas] in engine.toml)
    ├── InvalidTransition       an illegal step/run state change (a bug, never user input)
    └── StepError               a step failed; the runner records it on the step
        ├── StepTimeout         the step ran longer than its timeout_s
        ├── RefError            a {"ref": ...} path does not exist in the run context
        ├── TemplateError       a {"template": ...} failed to render (unknown name, bad syntax)
        ├── SecretError         a {"secret": ...} is not set in the environment
        └── ConditionError      a condition cannot be evaluated (missing path, bad comparison)

Messages point at the policy location (a JSON pointer such as ``/steps/3/params/path``)
and say what would fix the problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "ConditionError",
    "ConfigError",
    "Conflict",
    "EngineError",
    "Forbidden",
    "GovernanceError",
    "InvalidTransition",
    "NotApproved",
    "NotFound",
    "PolicyError",
    "Problem",
    "QuotaExceeded",
    "RefError",
    "RegistryError",
    "ResumeError",
    "SecretError",
    "StepError",
    "StepTimeout",
    "TemplateError",
    "UsageError",
]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a policy, at one place.

    ``pointer`` is a JSON pointer into the policy document ("" is the whole document);
    ``line``/``column`` are set for JSON syntax errors.

    Example: ``Problem("/steps/3/type", "unknown step type 'core.valu'", hint="did you mean 'core.value'?")``
    """

    pointer: str
    message: str
    hint: str | None = None
    line: int | None = field(default=None, compare=False)
    column: int | None = field(default=None, compare=False)

    def __str__(self) -> str:
        text = f"{self.where()}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def where(self) -> str:
        """``/steps/3/type (line 12, column 7)``; just the line and column for a JSON syntax error."""
        if self.line is None:
            return self.pointer or "/"
        place = f"line {self.line}, column {self.column}"
        return f"{self.pointer} ({place})" if self.pointer else place

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pointer": self.pointer, "message": self.message, "hint": self.hint}
        if self.line is not None:
            out["line"] = self.line
            out["column"] = self.column
        return out


class EngineError(Exception):
    """Base class of the engine's errors."""

    exit_code: ClassVar[int] = 1


class PolicyError(EngineError, ValueError):
    """The policy document is invalid. ``problems`` lists every problem found, sorted by location."""

    exit_code: ClassVar[int] = 2

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = sorted(problems, key=lambda p: (_pointer_key(p.pointer), p.message))
        self.source = source
        head = f"{source}: " if source else ""
        count = len(self.problems)
        lines = [f"{head}{count} problem{'s' if count != 1 else ''}"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class UsageError(EngineError):
    """A command was used wrongly: an unknown run id, a malformed flag."""

    exit_code: ClassVar[int] = 2


class NotFound(UsageError):
    """A run, policy, version or other resource that does not exist (in this workspace): HTTP 404."""


class Conflict(UsageError):
    """The action does not fit the resource's state (a file-backed policy edited through the API,
    a finished run cancelled): HTTP 409."""


class RegistryError(EngineError):
    """A step type cannot be registered or a plugin module cannot be imported."""

    exit_code: ClassVar[int] = 2


class ResumeError(EngineError):
    """The run cannot be resumed (it succeeded, is still running, or the policy does not match)."""

    exit_code: ClassVar[int] = 2


class ConfigError(EngineError):
    """The engine configuration file or an ``ENGINE_*`` setting is invalid; the message names which."""

    exit_code: ClassVar[int] = 2


class GovernanceError(EngineError):
    """A governance rule refused the action (approval, quota); the message says what a person can do."""

    exit_code: ClassVar[int] = 4


class NotApproved(GovernanceError):
    """A real run of a policy version whose approval hash nobody approved, with ``require_approval`` on."""

    def __init__(self, message: str, policy_id: str | None = None, approval_hash: str | None = None) -> None:
        super().__init__(message)
        self.policy_id = policy_id
        self.approval_hash = approval_hash


class Forbidden(GovernanceError):
    """The caller's role does not allow the action (a viewer writing, an author approving): HTTP 403."""


class QuotaExceeded(GovernanceError):
    """An actor reached a quota of ``[quotas]``; the message names it and when the next action is allowed."""

    def __init__(self, message: str, quota: str | None = None, next_allowed_at: str | None = None) -> None:
        super().__init__(message)
        self.quota = quota
        self.next_allowed_at = next_allowed_at  # UTC ISO 8601


class InvalidTransition(EngineError, RuntimeError):
    """An illegal state change, such as SUCCESS -> RUNNING. Always a bug in the engine."""


class StepError(EngineError):
    """A step failed. ``retryable`` tells ``retry_then_fail`` whether another attempt can help.

    ``tries`` is for a step that already tried several times inside one attempt (``send.email``
    reconnecting to its server): the step's recorded ``attempts`` then counts those tries.

    Example: ``raise StepError("smtp.example.com:587: connection refused (after 3 tries)", tries=3)``
    """

    retryable: bool = True
    tries: int = 1

    def __init__(self, message: str, *, retryable: bool | None = None, tries: int | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        if tries is not None:
            self.tries = max(1, tries)


class StepTimeout(StepError):
    """The step ran longer than its ``timeout_s``."""


class RefError(StepError):
    """A ``{"ref": ...}`` path does not exist in the run context."""

    retryable = False


class TemplateError(StepError):
    """A ``{"template": ...}`` could not be rendered."""

    retryable = False


class SecretError(StepError):
    """A ``{"secret": ...}`` is not set."""

    retryable = False


class ConditionError(StepError):
    """A condition could not be evaluated."""

    retryable = False


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``"did you mean 'core.value'?"`` for the nearest choice, or None when nothing is near."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.65)
    return f"did you mean {match[0]!r}?" if match else None


def _pointer_key(pointer: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key so that /steps/10 comes after /steps/9."""
    parts = pointer.split("/")[1:] if pointer else []
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)
