"""The five-field cron parser and the local-to-UTC rules for DST."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from engine.cron import CronError, local_to_utc, parse

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "minutes", "hours"),
    [
        pytest.param("0 7 * * *", (0,), (7,), id="numbers"),
        pytest.param("*/15 8-10 * * *", (0, 15, 30, 45), (8, 9, 10), id="step-and-range"),
        pytest.param("5/20 0,12 * * *", (5, 25, 45), (0, 12), id="start-step-and-list"),
        pytest.param("0-10/5 8-18/4 * * *", (0, 5, 10), (8, 12, 16), id="range-with-step"),
    ],
)
def test_minute_and_hour_fields(text, minutes, hours):
    cron = parse(text)
    assert (cron.minutes, cron.hours) == (minutes, hours)


def test_names_and_sunday_as_7():
    cron = parse("0 0 * jan-mar,dec sat,sun")
    assert cron.months == frozenset({1, 2, 3, 12})
    assert cron.weekdays == frozenset({6, 0})
    assert parse("0 0 * * 7").weekdays == frozenset({0}) == parse("0 0 * * SUN").weekdays
    assert parse("0 0 * * 5-7").weekdays == frozenset({5, 6, 0})


def test_a_backwards_weekday_range_is_an_error():
    with pytest.raises(CronError, match="day of week field 'sat-sun': range 'sat-sun' runs backwards"):
        parse("0 0 * * sat-sun")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 7 * *", "a cron expression has 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("* 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("* * 0 * *", "day of month field '0': 0 is out of range 1-31"),
        ("* * * 13 *", "month field '13': 13 is out of range 1-12"),
        (
            "* * * * mon-fir",
            "day of week field 'mon-fir': 'fir' is not a number from 0 to 7"
            " (or a name: sun, mon, tue, wed, thu, fri, sat)",
        ),
        ("*/x * * * *", "minute field '*/x': step 'x' must be a positive whole number"),
        ("0 0 31 apr,jun *", "'0 0 31 apr,jun *' never fires: no chosen month has the chosen day of month"),
    ],
)
def test_parse_errors_name_the_field(text, message):
    with pytest.raises(CronError) as info:
        parse(text)
    assert str(info.value) == message


def test_feb_29_is_possible():
    assert parse("0 0 29 2 *").days == frozenset({29})


def test_local_to_utc_in_the_spring_gap_is_the_first_valid_time_after_it():
    assert local_to_utc(dt.datetime(2026, 3, 29, 2, 30), BERLIN) == [dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)]


def test_local_to_utc_in_the_repeated_hour_is_the_first_occurrence_unless_both_are_asked_for():
    first, second = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC), dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)
    assert local_to_utc(dt.datetime(2026, 10, 25, 2, 30), BERLIN) == [first]
    assert local_to_utc(dt.datetime(2026, 10, 25, 2, 30), BERLIN, both=True) == [first, second]


def test_day_matching_or_rule_when_both_day_fields_are_restricted():
    cron = parse("0 0 13 * fri")
    assert cron.matches_day(dt.date(2026, 11, 13))  # Friday the 13th
    assert cron.matches_day(dt.date(2026, 12, 13))  # a Sunday, but the 13th
    assert cron.matches_day(dt.date(2026, 12, 4))  # a Friday
    assert not cron.matches_day(dt.date(2026, 12, 5))
