"""Versions by content, approval by hash (a schedule change needs none), separate approvers."""

from __future__ import annotations

import pytest

from engine.errors import GovernanceError, NotApproved, UsageError
from engine.governance import approval, audit, registry
from tests.governance.conftest import config, policy

ON = config(governance={"require_approval": True})


def test_a_new_version_only_when_the_canonical_content_changes(engine_):
    v1 = registry.record_version(engine_, policy(), actor="user:ada", source="file:p.json")
    same = registry.record_version(engine_, dict(reversed(list(policy().items()))), actor="user:bob", source="cli")
    v2 = registry.record_version(engine_, policy(value=2), actor="user:bob", source="cli")
    assert (v1.version, v1.new, same.version, same.new, v2.version) == (1, True, 1, False, 2)
    assert same.created_by == "user:ada"
    assert v1.hash != v2.hash and v1.approval_hash != v2.approval_hash
    assert [v.version for v in registry.versions(engine_, "daily")] == [1, 2]
    assert [e.action for e in audit.entries(engine_)] == ["policy.version_added", "policy.version_added"]


def test_a_schedule_only_change_is_a_new_version_with_the_same_approval_hash(engine_):
    v1 = registry.record_version(engine_, policy(schedule={"cron": "0 7 * * *"}), actor="user:ada", source="cli")
    v2 = registry.record_version(engine_, policy(schedule={"cron": "0 8 * * *"}), actor="user:ada", source="cli")
    assert v2.version == 2 and v2.hash != v1.hash and v2.approval_hash == v1.approval_hash
    changed = audit.entries(engine_, action="policy.schedule_changed")
    assert len(changed) == 1
    assert changed[0].details["from"] == {"cron": "0 7 * * *"} and changed[0].details["needs_approval"] is False


def test_run_refused_until_approved_then_refused_again_after_revoke(engine_):
    v1 = registry.record_version(engine_, policy(), actor="user:ada", source="cli")
    with pytest.raises(NotApproved) as info:
        approval.check_approved(engine_, ON, v1, "user:ada")
    message = str(info.value)
    assert info.value.exit_code == 4
    assert "'daily'" in message and v1.approval_hash in message and "user:ada" in message
    assert f"engine approve daily --hash {v1.approval_hash}" in message
    state = approval.approve(engine_, ON, "daily", v1.approval_hash[:12], "user:bob", note="looks right")
    assert state.approved and state.approved_by == "user:bob"
    assert approval.check_approved(engine_, ON, v1, "user:ada").approved
    approval.revoke(engine_, "daily", v1.approval_hash, "user:bob")
    with pytest.raises(NotApproved):
        approval.check_approved(engine_, ON, v1, "user:ada")
    actions = [e.action for e in audit.entries(engine_)]
    assert actions == [
        "policy.version_added",
        "run.refused",
        "policy.approved",
        "policy.revoked",
        "run.refused",
    ]


def test_approval_off_lets_an_unapproved_version_run(engine_):
    v1 = registry.record_version(engine_, policy(), actor="user:ada", source="cli")
    assert approval.check_approved(engine_, config(), v1, "user:ada").approved is False


def test_a_one_byte_change_needs_a_new_approval_a_schedule_change_does_not(engine_):
    v1 = registry.record_version(engine_, policy(schedule={"cron": "0 7 * * *"}), actor="user:ada", source="cli")
    approval.approve(engine_, ON, "daily", v1.approval_hash, "user:bob")
    moved = registry.record_version(engine_, policy(schedule={"cron": "0 9 * * *"}), actor="user:ada", source="cli")
    assert approval.check_approved(engine_, ON, moved, "user:ada").approved
    edited = registry.record_version(
        engine_, policy(value=11, schedule={"cron": "0 9 * * *"}), actor="user:ada", source="cli"
    )
    with pytest.raises(NotApproved):
        approval.check_approved(engine_, ON, edited, "user:ada")


def test_separate_approver_forbids_approving_your_own_version(engine_):
    strict = config(governance={"require_approval": True, "separate_approver": True})
    v1 = registry.record_version(engine_, policy(), actor="user:ada", source="cli")
    with pytest.raises(GovernanceError, match="another person must approve it") as info:
        approval.approve(engine_, strict, "daily", v1.approval_hash, "user:ada")
    assert info.value.exit_code == 4
    assert approval.approve(engine_, strict, "daily", v1.approval_hash, "user:bob").approved


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("abc", "at least 12"),
        ("zzzzzzzzzzzzzzzz", "at least 12"),
        ("0123456789abcdef", "has no version with approval hash"),
    ],
)
def test_a_bad_hash_is_a_usage_error_that_says_what_exists(engine_, text, says):
    registry.record_version(engine_, policy(), actor="user:ada", source="cli")
    with pytest.raises(UsageError, match=says):
        approval.approve(engine_, ON, "daily", text, "user:bob")


def test_an_unknown_policy_says_how_to_record_it(engine_):
    with pytest.raises(UsageError, match="engine policy add"):
        approval.approve(engine_, ON, "nope", "0" * 64, "user:bob")


def test_diff_is_a_unified_diff_of_the_canonical_json(engine_):
    v1 = registry.record_version(engine_, policy(), actor="user:ada", source="cli")
    v2 = registry.record_version(engine_, policy(value=2), actor="user:ada", source="cli")
    text = registry.diff(v1, v2)
    assert text.startswith("--- daily v1")
    assert '-        "value": 1' in text and '+        "value": 2' in text
