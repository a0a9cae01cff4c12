"""The plugin author's surface: ``engine.__all__`` is pinned (like httpx's tests/test_exported_members.py)."""

from __future__ import annotations

import types

import engine
from engine import errors

EXPECTED = [
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


def test_all_is_pinned():
    assert engine.__all__ == EXPECTED


def test_all_imports_are_exported():
    """Every public name of the package (submodules aside) is in __all__, and nothing else.

    Names are imported on first use: resolve them all, then look at what the module holds."""
    for name in engine.__all__:
        getattr(engine, name)
    public = sorted(
        name
        for name, value in vars(engine).items()
        if (not name.startswith("_") or name == "__version__") and not isinstance(value, types.ModuleType)
    )
    assert public == sorted(engine.__all__)


def test_dir_lists_every_export_before_first_use():
    assert set(engine.__all__) <= set(dir(engine))


def test_an_unknown_name_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        engine.Nope  # noqa: B018


def test_exported_names_resolve():
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name
    assert engine.__version__ == "0.1.0"


def test_errors_module_exports_the_hierarchy_with_exit_codes():
    assert sorted(errors.__all__) == sorted(n for n in EXPECTED if n in vars(errors))
    assert {name: getattr(errors, name).exit_code for name in errors.__all__ if name != "Problem"} == {
        "ConditionError": 1,
        "ConfigError": 2,
        "EngineError": 1,
        "GovernanceError": 4,
        "InvalidTransition": 1,
        "NotApproved": 4,
        "NotFound": 2,
        "Conflict": 2,
        "Forbidden": 4,
        "PolicyError": 2,
        "QuotaExceeded": 4,
        "RefError": 1,
        "RegistryError": 2,
        "ResumeError": 2,
        "SecretError": 1,
        "StepError": 1,
        "StepTimeout": 1,
        "TemplateError": 1,
        "UsageError": 2,
    }
    for name in ("StepTimeout", "RefError", "TemplateError", "SecretError", "ConditionError"):
        assert issubclass(getattr(errors, name), errors.StepError)
    assert {
        n: getattr(errors, n).retryable
        for n in ("StepError", "StepTimeout", "RefError", "TemplateError", "SecretError", "ConditionError")
    } == {
        "StepError": True,
        "StepTimeout": True,
        "RefError": False,
        "TemplateError": False,
        "SecretError": False,
        "ConditionError": False,
    }
