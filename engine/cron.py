"""Five-field cron expressions: parsing, and the fire times of one local day.

``minute hour day-of-month month day-of-week``, each a ``*``, a number, a range ``a-b``, a step
``*/n`` or ``a-b/n``, or a comma list of these; months and weekdays also by name (``jan``,
``mon``); weekday 0 and 7 are Sunday. As in Vixie cron, when both day fields are restricted a
day matches if *either* does.

Daylight-saving time, in the schedule's time zone:

- a time that does not exist (spring forward, 02:30 in Europe/Berlin on 2026-03-29) fires once,
  at the first valid time after the gap (03:00 local);
- a time that exists twice (fall back, 02:30 on 2026-10-25) fires once, at its first
  occurrence, unless the hour field is a wildcard (``*``, ``*/n``): such jobs fire in both hours,
  as Vixie cron does for its "wildcard" jobs.

Pure functions of their arguments: no clock, no state.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

UTC = dt.UTC

_NAMES = {
    3: {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)},
    4: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February may have 29


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message names the field."""


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    dom_any: bool
    dow_any: bool
    hour_any: bool

    def matches_day(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        if self.dom_any and self.dow_any:
            return True
        if self.dom_any:
            return dow
        if self.dow_any:
            return dom
        return dom or dow

    def fires_on(self, day: dt.date, tz: ZoneInfo) -> list[dt.datetime]:
        """The UTC fire times of local date ``day``, sorted, each once."""
        if not self.matches_day(day):
            return []
        out: set[dt.datetime] = set()
        for hour in self.hours:
            for minute in self.minutes:
                out.update(local_to_utc(dt.datetime.combine(day, dt.time(hour, minute)), tz, both=self.hour_any))
        return sorted(out)


def parse(text: str) -> Cron:
    """Parse a five-field expression; raise :class:`CronError` naming the bad field."""
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    values = [_field(i, part) for i, part in enumerate(parts)]
    weekdays = frozenset(d % 7 for d in values[4])
    cron = Cron(
        text=" ".join(parts),
        minutes=tuple(sorted(values[0])),
        hours=tuple(sorted(values[1])),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        dom_any=parts[2].startswith("*"),
        dow_any=parts[4].startswith("*"),
        hour_any=parts[1].startswith("*"),
    )
    if cron.dow_any and not any(d <= _MONTH_DAYS[m - 1] for m in cron.months for d in cron.days):
        raise CronError(f"{cron.text!r} never fires: no chosen month has the chosen day of month")
    return cron


def _field(index: int, text: str) -> set[int]:
    name, low, high = _FIELDS[index]
    out: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name} field {text!r}: step {step_text!r} must be a positive whole number")
            step = int(step_text)
        if base == "*":
            start, end = low, high if index != 4 else 6
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(index, first, text), _value(index, last, text)
            if start > end:
                raise CronError(f"{name} field {text!r}: range {base!r} runs backwards")
        else:
            start = _value(index, base, text)
            end = high if step_text else start
        out.update(range(start, end + 1, step))
    return out


def _value(index: int, text: str, whole: str) -> int:
    name, low, high = _FIELDS[index]
    names = _NAMES.get(index, {})
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        hint = f" (or a name: {', '.join(names)})" if names else ""
        raise CronError(f"{name} field {whole!r}: {text!r} is not a number from {low} to {high}{hint}")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name} field {whole!r}: {value} is out of range {low}-{high}")
    return value


def local_to_utc(naive: dt.datetime, tz: ZoneInfo, both: bool = False) -> list[dt.datetime]:
    """The UTC instants a local wall-clock time stands for (see the module docstring)."""
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    if _exists(first):
        a, b = first.astimezone(UTC), second.astimezone(UTC)
        return [a, b] if both and a != b else [min(a, b)]
    probe = naive  # in a gap: walk to the first minute that exists
    for _ in range(48 * 60):
        probe += dt.timedelta(minutes=1)
        candidate = probe.replace(tzinfo=tz)
        if _exists(candidate):
            return [candidate.astimezone(UTC)]
    raise CronError(f"{naive} has no valid time within 48 hours in {tz.key}")  # pragma: no cover


def _exists(aware: dt.datetime) -> bool:
    return aware.astimezone(UTC).astimezone(aware.tzinfo).replace(tzinfo=None) == aware.replace(tzinfo=None)
