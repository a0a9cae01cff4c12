"""The plugin surface beyond steps: policy sections, Step.check at validation time, plugin tables."""

from __future__ import annotations

import sqlite3

import pytest

from engine import EngineConfig, PolicyError, RegistryError, policy_section
from engine.schema import policy_schema
from engine.validate import validate_document
from tests.conftest import policy


def target(target="a", sid="t"):
    return {"id": sid, "type": "test.target", "params": {"target": target}}


def problems(doc, config=None):
    with pytest.raises(PolicyError) as info:
        validate_document(doc, config=config or EngineConfig({}, environ={}))
    return [str(p) for p in info.value.problems]


def test_a_declared_section_is_validated_and_filled_with_its_default():
    valid = validate_document(policy(target()), config=EngineConfig({}, environ={}))
    assert valid.sections["test_targets"] == ["a"]
    assert valid.sections["test_limits"] == {}
    valid = validate_document(
        policy(target("b"), test_targets=["b"], test_limits={"b": {"per_run": 2}}), config=EngineConfig({}, environ={})
    )
    assert valid.sections["test_limits"]["b"].per_run == 2


def test_section_problems_carry_their_pointer():
    assert problems(policy(target(), test_limits={"a": {"per_run": 0, "x": 1}})) == [
        "/test_limits/a/per_run: must be greater than or equal to 1 (got 0)",
        "/test_limits/a/x: unknown field 'x' (allowed: per_run)",
    ]


def test_an_unknown_top_level_field_suggests_a_section():
    assert problems(policy(target(), test_target=["a"])) == [
        "/test_target: unknown field 'test_target' (did you mean 'test_targets'?)"
    ]


def test_step_check_reports_with_the_step_pointer():
    assert problems(policy(target("zzz"))) == ["/steps/0/params/target: target 'zzz' is not allowed (allowed: a)"]


def test_step_check_reads_engine_config():
    config = EngineConfig({"test": {"targets": ["zzz"]}}, environ={})
    validate_document(policy(target("zzz")), config=config)


def test_step_check_leaves_expressions_to_run_time():
    validate_document(policy(target({"template": "zzz"})), config=EngineConfig({}, environ={}))


def test_sections_are_in_the_policy_schema():
    schema = policy_schema()
    assert schema["properties"]["test_targets"]["items"] == {"type": "string"}
    assert schema["properties"]["test_limits"]["description"] == "Per-target limits for test.target."


def test_redeclaring_a_section_with_another_type_raises():
    with pytest.raises(RegistryError, match=r"policy section 'test_targets' is declared twice: by tests.stepkit:\d+"):
        policy_section("test_targets", list[int], "other")
    with pytest.raises(RegistryError, match="is a core policy field"):
        policy_section("steps", list[str], "no")


def test_steps_read_sections_and_keep_records_in_plugin_tables(run, state_dir):
    doc = policy(target("b", "one"), target("b", "two"), test_targets=["b"], test_limits={"b": {"per_run": 5}})
    result = run(doc)
    assert result.status == "SUCCESS"
    with sqlite3.connect(state_dir / "engine.db") as db:
        rows = db.execute("select target, run_id from test_visits").fetchall()
    assert rows == [("b", result.run_id), ("b", result.run_id)]
