"""Fire times of a policy's ``schedule``: pure, deterministic helpers with no hidden state.

Every function takes the schedule (a :class:`~engine.policy.Schedule`, or the policy's
``schedule`` object as a dict) and the instants it needs (UTC-aware datetimes; a naive datetime
or ISO text is read as UTC), and returns UTC-aware datetimes: the same answer for the same
arguments, because there is no clock in here. The daemon
(:mod:`engine.scheduler`) asks "what is due now?" with the wall-clock time and the last slot
recorded in the database; tests ask the same questions under a frozen clock.

A *slot* is one fire time. ``interval_minutes`` slots are multiples of the interval counted
from 1970-01-01T00:00Z, so they never drift with start-up time; ``window_time`` slots are that
UTC time every day; ``cron`` slots follow :mod:`engine.cron` in the schedule's time zone.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from . import cron as crons
from .policy import Schedule

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_HORIZON_DAYS = 366 * 8  # enough for any cron that fires at all (Feb 29 on a Monday included)


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """An IANA time zone; ``ValueError`` with a clear message when it does not exist."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "use an IANA name such as 'Europe/Berlin' or 'UTC'"
        raise ValueError(f"unknown time zone {name!r} ({hint})") from None


def _cron_of(schedule: Schedule) -> tuple[crons.Cron, ZoneInfo]:
    if schedule.cron is not None:
        return _parsed(schedule.cron), zone(schedule.timezone)
    assert schedule.window_time is not None
    hour, minute = schedule.window_time.split(":")
    return _parsed(f"{int(minute)} {int(hour)} * * *"), zone("UTC")


@lru_cache(maxsize=256)
def _parsed(text: str) -> crons.Cron:
    return crons.parse(text)


def _interval(schedule: Schedule) -> dt.timedelta | None:
    if schedule.interval_minutes is not None:
        return dt.timedelta(minutes=schedule.interval_minutes)
    if schedule.interval_seconds is not None:
        return dt.timedelta(seconds=schedule.interval_seconds)
    return None


def _utc(value: dt.datetime | str) -> dt.datetime:
    """An instant in UTC: an aware datetime, a naive one (read as UTC), or ISO 8601 text."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


ScheduleLike = Schedule | Mapping[str, Any]


def as_schedule(schedule: ScheduleLike) -> Schedule:
    """A :class:`Schedule`, from the model itself or from the policy's ``schedule`` object."""
    return schedule if isinstance(schedule, Schedule) else Schedule.model_validate(schedule)


def slot_key(slot: dt.datetime) -> str:
    """The canonical text of a slot, as stored in ``runs.scheduled_for``: ``2026-03-29T01:00:00+00:00``."""
    return _utc(slot).replace(microsecond=0).isoformat()


def parse_slot(text: str) -> dt.datetime:
    return _utc(dt.datetime.fromisoformat(text))


def fires_after(schedule: ScheduleLike, after_utc: dt.datetime | str) -> Iterator[dt.datetime]:
    """Every slot strictly after ``after_utc``, in order."""
    schedule = as_schedule(schedule)
    after = _utc(after_utc)
    step = _interval(schedule)
    if step is not None:
        k = (after - EPOCH) // step + 1
        while True:
            yield EPOCH + k * step
            k += 1
    cron, tz = _cron_of(schedule)
    day = after.astimezone(tz).date() - dt.timedelta(days=1)
    for _ in range(_HORIZON_DAYS):
        for fire in cron.fires_on(day, tz):
            if fire > after:
                yield fire
        day += dt.timedelta(days=1)


def fires_until(schedule: ScheduleLike, until_utc: dt.datetime | str) -> Iterator[dt.datetime]:
    """Every slot at or before ``until_utc``, newest first."""
    schedule = as_schedule(schedule)
    until = _utc(until_utc)
    step = _interval(schedule)
    if step is not None:
        k = (until - EPOCH) // step
        while True:
            yield EPOCH + k * step
            k -= 1
    cron, tz = _cron_of(schedule)
    day = until.astimezone(tz).date() + dt.timedelta(days=1)
    for _ in range(_HORIZON_DAYS):
        for fire in reversed(cron.fires_on(day, tz)):
            if fire <= until:
                yield fire
        day -= dt.timedelta(days=1)


def next_fire(schedule: ScheduleLike, after_utc: dt.datetime | str) -> dt.datetime | None:
    """The first slot strictly after ``after_utc`` (None only for a cron that never fires again)."""
    return next(fires_after(schedule, after_utc), None)


def previous_fire(schedule: ScheduleLike, at_or_before_utc: dt.datetime) -> dt.datetime | None:
    """The latest slot at or before the given instant."""
    return next(fires_until(schedule, at_or_before_utc), None)


def grace(schedule: ScheduleLike, slot: dt.datetime) -> dt.timedelta:
    """How late ``slot`` may start and still be on time: ``misfire_grace_s``, else the gap to the next slot."""
    schedule = as_schedule(schedule)
    if schedule.misfire_grace_s is not None:
        return dt.timedelta(seconds=schedule.misfire_grace_s)
    following = next_fire(schedule, slot)
    return following - slot if following is not None else dt.timedelta(days=1)


def missed_slots(
    schedule: ScheduleLike, last_slot: dt.datetime | str | None, now_utc: dt.datetime | str
) -> list[dt.datetime]:
    """The slots to run now, oldest first, given the last slot already recorded.

    Candidates are the slots after ``last_slot`` up to ``now_utc``. The newest is *on time* when
    ``now_utc`` is within its grace (:func:`grace`); older ones, and a late newest one, are
    *missed*. Then, by ``catchup``:

    - ``latest``: the newest slot, on time or missed (once, however many were missed);
    - ``none``: the newest slot only if it is on time; missed slots are skipped;
    - ``all``: every candidate in order, at most the ``max_catchup`` newest.

    No ``last_slot`` (never run) means due now: the newest slot at or before ``now_utc``; except
    under ``catchup: none``, where a policy never run before runs that slot only within an
    explicit ``misfire_grace_s`` of it, and otherwise waits for its next slot (the scheduler
    records the newest past slot as skipped). A disabled schedule has nothing to run.
    """
    schedule = as_schedule(schedule)
    if not schedule.enabled:
        return []
    now = _utc(now_utc)
    if last_slot is None:
        latest = previous_fire(schedule, now)
        if latest is None:
            return []
        if schedule.catchup == "none":
            explicit = schedule.misfire_grace_s
            return [latest] if explicit is not None and now - latest <= dt.timedelta(seconds=explicit) else []
        return [latest]
    last = _utc(last_slot)
    if schedule.catchup == "all":
        taken: list[dt.datetime] = []
        for slot in fires_until(schedule, now):
            if slot <= last or len(taken) == schedule.max_catchup:
                break
            taken.append(slot)
        return taken[::-1]
    latest = previous_fire(schedule, now)
    if latest is None or latest <= last:
        return []
    if schedule.catchup == "none" and now - latest > grace(schedule, latest):
        return []
    return [latest]


def is_due(schedule: ScheduleLike, last_slot: dt.datetime | str | None, now_utc: dt.datetime | str) -> bool:
    """Whether :func:`missed_slots` has anything to run now."""
    return bool(missed_slots(schedule, last_slot, now_utc))


def describe(schedule: ScheduleLike) -> str:
    """The schedule in words: ``at 07:00 on Mon-Fri (Europe/Berlin)``."""
    schedule = as_schedule(schedule)
    if schedule.interval_minutes is not None:
        n = schedule.interval_minutes
        return "every minute" if n == 1 else f"every {n} minutes"
    if schedule.interval_seconds is not None:
        return f"every {schedule.interval_seconds} s (test schedule)"
    if schedule.window_time is not None:
        return f"every day at {schedule.window_time} UTC"
    assert schedule.cron is not None
    minute, hour, dom, month, dow = schedule.cron.split()
    if minute.isdigit() and hour.isdigit():
        when = f"at {int(hour):02d}:{int(minute):02d}"
    elif minute.isdigit() and hour == "*":
        when = f"at minute {int(minute)} of every hour"
    else:
        when = f"at minute {minute}, hour {hour}"
    days = []
    if dow != "*":
        days.append(f"on {_weekday_words(dow)}")
    if dom != "*":
        days.append(f"on day {dom} of the month")
    if month != "*":
        days.append(f"in month {month}")
    if days:
        day_words = " or ".join(days[:2]) + (f" {days[2]}" if len(days) > 2 else "")
    else:
        day_words = "" if hour == "*" else "every day"
    return f"{when} {day_words}".rstrip() + f" ({schedule.timezone})"


_DAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _weekday_words(field: str) -> str:
    def word(token: str) -> str:
        return _DAY_NAMES[int(token)] if token.isdigit() and int(token) <= 7 else token.capitalize()

    parts = []
    for item in field.split(","):
        if "/" in item:
            parts.append(item)
        elif "-" in item:
            a, b = item.split("-", 1)
            parts.append(f"{word(a)}-{word(b)}")
        else:
            parts.append(word(item))
    return ",".join(parts)
