"""The ``schedule`` and ``retention`` sections as `engine validate` checks them: pointers and messages."""

from __future__ import annotations

import pytest

from engine.errors import PolicyError
from engine.validate import validate_document
from tests.conftest import policy

STEP = {"id": "a", "type": "core.value", "params": {"value": 1}}


def problems(**top):
    with pytest.raises(PolicyError) as info:
        validate_document(policy(STEP, **top))
    return [(p.pointer, p.message) for p in info.value.problems]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        pytest.param(
            {"cron": "61 7 * * *"},
            [("/schedule/cron", "minute field '61': 61 is out of range 0-59 (got '61 7 * * *')")],
            id="cron-minute-out-of-range",
        ),
        pytest.param(
            {"cron": "0 7 * *"},
            [
                (
                    "/schedule/cron",
                    "a cron expression has 5 fields (minute hour day-of-month month day-of-week), got 4"
                    " (got '0 7 * *')",
                )
            ],
            id="cron-four-fields",
        ),
        pytest.param(
            {"cron": "0 7 30 feb *"},
            [
                (
                    "/schedule/cron",
                    "'0 7 30 feb *' never fires: no chosen month has the chosen day of month (got '0 7 30 feb *')",
                )
            ],
            id="cron-never-fires",
        ),
        pytest.param(
            {"cron": "0 7 * * 1-5", "timezone": "Europe/Berln"},
            [
                (
                    "/schedule/timezone",
                    "unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?) (got 'Europe/Berln')",
                )
            ],
            id="unknown-timezone",
        ),
        pytest.param(
            {"cron": "* * * * *", "interval_minutes": 5},
            [
                (
                    "/schedule",
                    "a schedule needs exactly one of cron, interval_minutes, window_time (got cron, interval_minutes)",
                )
            ],
            id="two-kinds",
        ),
        pytest.param(
            {"catchup": "latest"},
            [("/schedule", "a schedule needs exactly one of cron, interval_minutes, window_time (got none)")],
            id="no-kind",
        ),
        pytest.param(
            {"window_time": "7:00"},
            [("/schedule/window_time", "must be a UTC time as HH:MM, 24-hour, e.g. '07:00' (got '7:00')")],
            id="window-time-format",
        ),
        pytest.param(
            {"interval_minutes": 0},
            [("/schedule/interval_minutes", "must be greater than or equal to 1 (got 0)")],
            id="interval-zero",
        ),
        pytest.param(
            {"interval_minutes": 5, "catchup": "some"},
            [("/schedule/catchup", "must be 'latest', 'none' or 'all' (got 'some')")],
            id="catchup-choices",
        ),
        pytest.param(
            {"interval_minutes": 5, "every": 3},
            [("/schedule/every", "unknown field 'every'")],
            id="unknown-field",
        ),
    ],
)
def test_schedule_problems_point_into_the_schedule(schedule, expected):
    assert problems(schedule=schedule) == expected


def test_window_time_with_a_local_time_zone_is_refused_with_the_cron_alternative():
    assert problems(schedule={"window_time": "07:00", "timezone": "Europe/Berlin"}) == [
        (
            "/schedule",
            "window_time is always UTC; for a local time use cron with timezone, e.g. "
            '{"cron": "0 7 * * *", "timezone": "Europe/Berlin"}',
        )
    ]


def test_schedule_params_must_be_declared_typed_and_complete():
    declared = {"region": {"type": "string"}, "limit": {"type": "integer", "default": 5}}
    assert problems(params=declared, schedule={"interval_minutes": 5, "params": {"regoin": "eu", "limit": "x"}}) == [
        ("/schedule/params", "parameter 'region' is required"),
        ("/schedule/params/limit", "parameter 'limit' must be of type integer, got 'x'"),
        ("/schedule/params/regoin", "undeclared parameter 'regoin'"),
    ]


def test_a_full_schedule_and_retention_validate():
    valid = validate_document(
        policy(
            STEP,
            params={"region": {"type": "string"}},
            schedule={
                "cron": "0 7 * * 1-5",
                "timezone": "Europe/Berlin",
                "enabled": True,
                "catchup": "all",
                "max_catchup": 3,
                "misfire_grace_s": 600,
                "params": {"region": "eu"},
            },
            retention={"days": 30, "keep_latest_n_runs": 10},
        )
    )
    assert valid.policy.schedule is not None and valid.policy.schedule.params == {"region": "eu"}
    assert valid.policy.retention is not None and valid.policy.retention.keep_latest_n_runs == 10


@pytest.mark.parametrize(
    ("retention", "expected"),
    [
        pytest.param(
            {"days": -1}, [("/retention/days", "must be greater than or equal to 0 (got -1)")], id="days-not-negative"
        ),
        pytest.param(
            {"keep_latest_n_runs": -1},
            [("/retention/keep_latest_n_runs", "must be greater than or equal to 0 (got -1)")],
            id="keep-not-negative",
        ),
        pytest.param({"keep": 3}, [("/retention/keep", "unknown field 'keep'")], id="unknown-field"),
    ],
)
def test_retention_problems(retention, expected):
    assert problems(retention=retention) == expected
