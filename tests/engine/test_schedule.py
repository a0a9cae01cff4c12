"""The pure schedule helpers under a frozen clock: every instant is passed in, nothing is read."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from engine.policy import Schedule
from engine.schedule import (
    describe,
    fires_after,
    grace,
    is_due,
    missed_slots,
    next_fire,
    previous_fire,
    slot_key,
)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def fires(schedule: Schedule, after: str, n: int) -> list[str]:
    return [slot_key(f) for f in itertools.islice(fires_after(schedule, utc(after)), n)]


# -- cron in a time zone, across both DST transitions ------------------------------------------

BERLIN_0230 = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")


def test_spring_forward_a_0230_job_runs_once_at_the_first_valid_time_after_the_gap():
    # 2026-03-29: Berlin clocks jump from 02:00 CET to 03:00 CEST; 02:30 does not exist
    assert fires(BERLIN_0230, "2026-03-28T12:00", 3) == [
        "2026-03-29T01:00:00+00:00",  # 03:00 CEST
        "2026-03-30T00:30:00+00:00",  # 02:30 CEST
        "2026-03-31T00:30:00+00:00",
    ]


def test_fall_back_a_0230_job_runs_once_not_twice():
    # 2026-10-25: 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET)
    assert fires(BERLIN_0230, "2026-10-24T12:00", 3) == [
        "2026-10-25T00:30:00+00:00",  # the first 02:30 only
        "2026-10-26T01:30:00+00:00",  # 02:30 CET
        "2026-10-27T01:30:00+00:00",
    ]


def test_fall_back_an_hourly_wildcard_job_runs_in_both_repeated_hours():
    hourly = Schedule(cron="30 * * * *", timezone="Europe/Berlin")
    assert fires(hourly, "2026-10-24T23:59", 4) == [
        "2026-10-25T00:30:00+00:00",  # 02:30 CEST
        "2026-10-25T01:30:00+00:00",  # 02:30 CET
        "2026-10-25T02:30:00+00:00",  # 03:30 CET
        "2026-10-25T03:30:00+00:00",
    ]


def test_spring_forward_the_whole_missing_hour_collapses_into_one_fire_at_0300():
    quarterly = Schedule(cron="*/15 * * * *", timezone="Europe/Berlin")
    assert fires(quarterly, "2026-03-29T00:40", 4) == [
        "2026-03-29T00:45:00+00:00",  # 01:45 CET
        "2026-03-29T01:00:00+00:00",  # 02:00-02:45 do not exist: 03:00 CEST, once
        "2026-03-29T01:15:00+00:00",
        "2026-03-29T01:30:00+00:00",
    ]


def test_weekday_cron_in_berlin_skips_the_weekend():
    weekdays = Schedule(cron="0 7 * * 1-5", timezone="Europe/Berlin")
    # Friday 2026-12-04, after 07:00 Berlin (06:00 UTC): next is Monday 2026-12-07
    assert fires(weekdays, "2026-12-04T06:00", 2) == ["2026-12-07T06:00:00+00:00", "2026-12-08T06:00:00+00:00"]


def test_summer_time_shifts_the_utc_fire_time_by_an_hour():
    daily = Schedule(cron="0 7 * * *", timezone="Europe/Berlin")
    assert next_fire(daily, utc("2026-07-01T00:00")) == utc("2026-07-01T05:00")
    assert next_fire(daily, utc("2026-12-01T00:00")) == utc("2026-12-01T06:00")


def test_day_of_month_and_weekday_both_restricted_match_either():
    either = Schedule(cron="0 0 1 * mon")  # the 1st, and every Monday
    assert fires(either, "2026-11-28T00:00", 3) == [
        "2026-11-30T00:00:00+00:00",  # Monday
        "2026-12-01T00:00:00+00:00",  # the 1st (a Tuesday)
        "2026-12-07T00:00:00+00:00",  # Monday
    ]


def test_next_fire_is_strictly_after_and_previous_fire_is_at_or_before():
    daily = Schedule(cron="0 7 * * *")
    assert next_fire(daily, utc("2026-12-01T07:00")) == utc("2026-12-02T07:00")
    assert previous_fire(daily, utc("2026-12-01T07:00")) == utc("2026-12-01T07:00")
    assert previous_fire(daily, utc("2026-12-01T06:59")) == utc("2026-11-30T07:00")


# -- interval anchoring and window mode ----------------------------------------------------


def test_interval_slots_are_anchored_at_the_epoch_not_at_start_up():
    every15 = Schedule(interval_minutes=15)
    assert next_fire(every15, utc("2026-12-01T10:07:31")) == utc("2026-12-01T10:15")
    assert next_fire(every15, utc("2026-12-01T10:14:59")) == utc("2026-12-01T10:15")
    assert next_fire(every15, utc("2026-12-01T10:15")) == utc("2026-12-01T10:30")


def test_an_interval_that_does_not_divide_a_day_still_counts_from_the_epoch():
    every7 = Schedule(interval_minutes=7)
    slot = next_fire(every7, utc("2026-12-01T00:00"))
    assert slot == utc("2026-12-01T00:03")  # midnight is 29,934,720 minutes after 1970 (4 past a multiple of 7)
    assert (slot - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) % dt.timedelta(minutes=7) == dt.timedelta(0)


def test_interval_seconds_is_the_test_schedule():
    fast = Schedule(interval_seconds=2)
    assert fires(fast, "2026-12-01T10:00:01", 3) == [
        "2026-12-01T10:00:02+00:00",
        "2026-12-01T10:00:04+00:00",
        "2026-12-01T10:00:06+00:00",
    ]


def test_window_time_is_once_a_day_at_that_utc_time():
    window = Schedule(window_time="07:00")
    assert fires(window, "2026-12-01T06:59", 2) == ["2026-12-01T07:00:00+00:00", "2026-12-02T07:00:00+00:00"]
    assert fires(window, "2026-12-01T07:00", 1) == ["2026-12-02T07:00:00+00:00"]


def test_window_time_ignores_dst_because_it_is_utc():
    window = Schedule(window_time="01:30")
    assert fires(window, "2026-10-24T12:00", 2) == ["2026-10-25T01:30:00+00:00", "2026-10-26T01:30:00+00:00"]


# -- missed slots: catch-up modes and misfire grace --------------------------------------------

HOURLY = {"interval_minutes": 60}


def test_a_missing_last_slot_means_due_now_for_the_newest_slot():
    assert missed_slots(Schedule(**HOURLY), None, utc("2026-12-01T10:20")) == [utc("2026-12-01T10:00")]
    assert is_due(Schedule(**HOURLY), None, utc("2026-12-01T10:20")) is True


def test_under_catchup_none_a_policy_never_run_waits_for_its_next_slot():
    schedule = Schedule(**HOURLY, catchup="none")
    assert missed_slots(schedule, None, utc("2026-12-01T10:20")) == []
    # the scheduler then records 10:00 as skipped: 11:00 is on time
    assert missed_slots(schedule, utc("2026-12-01T10:00"), utc("2026-12-01T11:00:05")) == [utc("2026-12-01T11:00")]
    # within an explicit misfire_grace_s, the newest slot still runs
    graced = Schedule(**HOURLY, catchup="none", misfire_grace_s=1800)
    assert missed_slots(graced, None, utc("2026-12-01T10:20")) == [utc("2026-12-01T10:00")]
    assert missed_slots(graced, None, utc("2026-12-01T10:40")) == []


def test_nothing_is_due_before_the_next_slot():
    schedule = Schedule(**HOURLY)
    assert missed_slots(schedule, utc("2026-12-01T10:00"), utc("2026-12-01T10:59:59")) == []
    assert is_due(schedule, utc("2026-12-01T10:00"), utc("2026-12-01T10:59:59")) is False
    assert missed_slots(schedule, utc("2026-12-01T10:00"), utc("2026-12-01T11:00")) == [utc("2026-12-01T11:00")]


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        pytest.param("latest", ["2026-12-01T14:00"], id="latest-runs-the-newest-once"),
        pytest.param("none", ["2026-12-01T14:00"], id="none-runs-the-on-time-slot"),
        pytest.param(
            "all",
            ["2026-12-01T11:00", "2026-12-01T12:00", "2026-12-01T13:00", "2026-12-01T14:00"],
            id="all-runs-every-missed-slot-in-order",
        ),
    ],
)
def test_catchup_after_downtime_with_an_on_time_newest_slot(catchup, expected):
    # down from 10:30 to 14:10: slots 11, 12, 13 were missed; 14:00 is 10 minutes late (on time)
    schedule = Schedule(**HOURLY, catchup=catchup)
    assert missed_slots(schedule, utc("2026-12-01T10:00"), utc("2026-12-01T14:10")) == [utc(t) for t in expected]


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        pytest.param("latest", ["2026-12-01T14:00"], id="latest-still-runs-the-newest"),
        pytest.param("none", [], id="none-skips-a-late-slot"),
    ],
)
def test_misfire_grace_decides_whether_the_newest_slot_is_missed(catchup, expected):
    schedule = Schedule(**HOURLY, catchup=catchup, misfire_grace_s=300)
    now = utc("2026-12-01T14:10")  # 14:00 is 600 s late, grace is 300 s
    assert missed_slots(schedule, utc("2026-12-01T10:00"), now) == [utc(t) for t in expected]


def test_catchup_none_runs_a_slot_within_its_grace():
    schedule = Schedule(**HOURLY, catchup="none", misfire_grace_s=300)
    assert missed_slots(schedule, utc("2026-12-01T13:00"), utc("2026-12-01T14:04:59")) == [utc("2026-12-01T14:00")]


def test_the_default_grace_is_the_interval_to_the_next_slot():
    assert grace(Schedule(**HOURLY), utc("2026-12-01T10:00")) == dt.timedelta(hours=1)
    weekdays = Schedule(cron="0 7 * * 1-5")
    assert grace(weekdays, utc("2026-12-04T07:00")) == dt.timedelta(days=3)  # Friday -> Monday
    assert grace(Schedule(**HOURLY, misfire_grace_s=90), utc("2026-12-01T10:00")) == dt.timedelta(seconds=90)


def test_catchup_all_takes_at_most_max_catchup_newest_slots():
    schedule = Schedule(**HOURLY, catchup="all", max_catchup=2)
    slots = missed_slots(schedule, utc("2026-12-01T00:00"), utc("2026-12-01T14:10"))
    assert slots == [utc("2026-12-01T13:00"), utc("2026-12-01T14:00")]


def test_a_wall_clock_jump_backwards_makes_nothing_due():
    schedule = Schedule(**HOURLY)
    assert missed_slots(schedule, utc("2026-12-01T14:00"), utc("2026-12-01T09:00")) == []


def test_a_disabled_schedule_is_never_due():
    schedule = Schedule(**HOURLY, enabled=False)
    assert missed_slots(schedule, None, utc("2026-12-01T10:00")) == []
    assert next_fire(schedule, utc("2026-12-01T10:00")) == utc("2026-12-01T11:00")  # still computable


def test_the_helpers_are_deterministic():
    schedule = Schedule(cron="*/20 6-8 * * *", timezone="America/New_York", catchup="all")
    now, last = utc("2026-11-01T14:00"), utc("2026-10-31T10:00")
    assert missed_slots(schedule, last, now) == missed_slots(schedule, last, now)
    assert fires(schedule, "2026-11-01T00:00", 5) == fires(schedule, "2026-11-01T00:00", 5)


def test_naive_datetimes_and_iso_text_are_read_as_utc():
    expected = utc("2026-12-01T11:00")
    assert next_fire(Schedule(**HOURLY), dt.datetime(2026, 12, 1, 10, 30)) == expected
    assert next_fire(Schedule(**HOURLY), "2026-12-01T10:30:00Z") == expected
    assert missed_slots(Schedule(**HOURLY), "2026-12-01T09:00:00+00:00", "2026-12-01T10:30") == [
        utc("2026-12-01T10:00")
    ]


def test_the_helpers_take_the_policys_schedule_object_as_a_dict():
    schedule = {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}
    assert next_fire(schedule, utc("2026-03-28T12:00")) == utc("2026-03-29T01:00")
    assert is_due(schedule, None, utc("2026-03-29T01:00")) is True


# -- words ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"cron": "0 7 * * 1-5", "timezone": "Europe/Berlin"}, "at 07:00 on Mon-Fri (Europe/Berlin)"),
        ({"cron": "30 6 * * *"}, "at 06:30 every day (UTC)"),
        ({"cron": "15 * * * *"}, "at minute 15 of every hour (UTC)"),
        ({"cron": "0 8 1 * *"}, "at 08:00 on day 1 of the month (UTC)"),
        ({"interval_minutes": 15}, "every 15 minutes"),
        ({"interval_minutes": 1}, "every minute"),
        ({"window_time": "07:00"}, "every day at 07:00 UTC"),
        ({"interval_seconds": 2}, "every 2 s (test schedule)"),
    ],
)
def test_describe_puts_a_schedule_in_words(fields, words):
    assert describe(Schedule(**fields)) == words
