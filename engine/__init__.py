"""A declarative DAG workflow engine: JSON policies of steps, run by an async state machine.

``engine`` is the core: the policy document, validation, values and conditions, the step
registry, the runner, run state and the CLI. It knows nothing about any stage: fetch,
transform, report, render and send steps are plugins (the ``steps`` package and third-party
packages) that register themselves by subclassing :class:`Step`.

Plugin authors import from here only; everything else is internal.

Names are imported on first use (PEP 562), so ``import engine`` and the command line start fast:
a command imports only the parts it needs.
"""

import importlib as _importlib
import typing as _typing

_EXPORTS = {
    "ArtifactRef": ("artifacts", "ArtifactRef"),
    "ArtifactStore": ("artifacts", "ArtifactStore"),
    "check_condition": ("conditions", "check_condition"),
    "evaluate_condition": ("conditions", "evaluate_condition"),
    "EngineConfig": ("config", "EngineConfig"),
    "ConditionError": ("errors", "ConditionError"),
    "ConfigError": ("errors", "ConfigError"),
    "EngineError": ("errors", "EngineError"),
    "GovernanceError": ("errors", "GovernanceError"),
    "Conflict": ("errors", "Conflict"),
    "Forbidden": ("errors", "Forbidden"),
    "NotFound": ("errors", "NotFound"),
    "InvalidTransition": ("errors", "InvalidTransition"),
    "PolicyError": ("errors", "PolicyError"),
    "Problem": ("errors", "Problem"),
    "RefError": ("errors", "RefError"),
    "RegistryError": ("errors", "RegistryError"),
    "ResumeError": ("errors", "ResumeError"),
    "SecretError": ("errors", "SecretError"),
    "StepError": ("errors", "StepError"),
    "StepTimeout": ("errors", "StepTimeout"),
    "TemplateError": ("errors", "TemplateError"),
    "UsageError": ("errors", "UsageError"),
    "MAX_DEPTH": ("limits", "MAX_DEPTH"),
    "NotApproved": ("errors", "NotApproved"),
    "QuotaExceeded": ("errors", "QuotaExceeded"),
    "LimitError": ("limits", "LimitError"),
    "checked_operator": ("limits", "checked_operator"),
    "mask_secret_query": ("redact", "mask_query"),
    "register_secret": ("redact", "register"),
    "sandbox_environment": ("sandbox", "sandbox_environment"),
    "is_due": ("schedule", "is_due"),
    "missed_slots": ("schedule", "missed_slots"),
    "next_fire": ("schedule", "next_fire"),
    "policy_section": ("sections", "policy_section"),
    "RunState": ("states", "RunState"),
    "StepState": ("states", "StepState"),
    "CheckContext": ("step", "CheckContext"),
    "ConditionValue": ("step", "ConditionValue"),
    "SavedState": ("step", "SavedState"),
    "Step": ("step", "Step"),
    "StepContext": ("step", "StepContext"),
    "is_expression": ("values", "is_expression"),
}

if _typing.TYPE_CHECKING:
    from .artifacts import ArtifactRef as ArtifactRef
    from .artifacts import ArtifactStore as ArtifactStore
    from .conditions import check_condition as check_condition
    from .conditions import evaluate_condition as evaluate_condition
    from .config import EngineConfig as EngineConfig
    from .errors import ConditionError as ConditionError
    from .errors import ConfigError as ConfigError
    from .errors import EngineError as EngineError
    from .errors import GovernanceError as GovernanceError
    from .errors import InvalidTransition as InvalidTransition
    from .errors import NotApproved as NotApproved
    from .errors import PolicyError as PolicyError
    from .errors import Problem as Problem
    from .errors import QuotaExceeded as QuotaExceeded
    from .errors import RefError as RefError
    from .errors import RegistryError as RegistryError
    from .errors import ResumeError as ResumeError
    from .errors import SecretError as SecretError
    from .errors import StepError as StepError
    from .errors import StepTimeout as StepTimeout
    from .errors import TemplateError as TemplateError
    from .errors import UsageError as UsageError
    from .limits import MAX_DEPTH as MAX_DEPTH
    from .limits import LimitError as LimitError
    from .limits import checked_operator as checked_operator
    from .redact import mask_query as mask_secret_query
    from .redact import register as register_secret
    from .sandbox import sandbox_environment as sandbox_environment
    from .schedule import is_due as is_due
    from .schedule import missed_slots as missed_slots
    from .schedule import next_fire as next_fire
    from .sections import policy_section as policy_section
    from .states import RunState as RunState
    from .states import StepState as StepState
    from .step import CheckContext as CheckContext
    from .step import ConditionValue as ConditionValue
    from .step import SavedState as SavedState
    from .step import Step as Step
    from .step import StepContext as StepContext
    from .values import is_expression as is_expression

__version__ = "0.1.0"

__all__ = [
    "ArtifactRef",
    "ArtifactStore",
    "CheckContext",
    "ConditionError",
    "ConditionValue",
    "ConfigError",
    "Conflict",
    "EngineConfig",
    "EngineError",
    "Forbidden",
    "GovernanceError",
    "InvalidTransition",
    "LimitError",
    "MAX_DEPTH",
    "NotApproved",
    "NotFound",
    "PolicyError",
    "Problem",
    "QuotaExceeded",
    "RefError",
    "RegistryError",
    "ResumeError",
    "RunState",
    "SavedState",
    "SecretError",
    "Step",
    "StepContext",
    "StepError",
    "StepState",
    "StepTimeout",
    "TemplateError",
    "UsageError",
    "__version__",
    "check_condition",
    "checked_operator",
    "evaluate_condition",
    "is_due",
    "is_expression",
    "mask_secret_query",
    "missed_slots",
    "next_fire",
    "policy_section",
    "register_secret",
    "sandbox_environment",
]


def __getattr__(name: str) -> object:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'engine' has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
