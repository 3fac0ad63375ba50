"""Schedules, as pure rules: a cron expression read in a time zone, and what is due.

``plan`` says, for one schedule at one instant, which nominal times start a job, how
many are skipped, and the next one due. The scheduler (scheduler.py) asks it under the
schedule's row lock and the store applies the answer in that transaction, so each
(schedule, nominal time) starts at most one job, whichever replica asks.

Times are microseconds since the epoch (UTC instants); the cron fields are read in the
schedule's zone (zoneinfo), so a daylight-saving change follows the zone's rules: a
wall time that does not exist is not run; one that exists twice runs at both instants.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from .definitions import DefinitionError, Violation, clip

__all__ = ["CATCHUP_ALL_LIMIT", "Clock", "CATCHUP_NONE_GRACE_US", "Catchup", "Overlap", "Plan",
           "ScheduleError", "ScheduleSpec", "check_spec", "next_after", "plan"]

#: Microseconds since the epoch, now (the scheduler's and notifier's time, a parameter).
Clock = Callable[[], int]

#: ``catchup = all`` starts at most this many missed runs (the latest ones).
CATCHUP_ALL_LIMIT = 100
#: ``catchup = none``: a run due this recently still starts (a tick's delay is not downtime).
CATCHUP_NONE_GRACE_US = 60_000_000
COUNT_LIMIT = 1_000


class Overlap(enum.StrEnum):
    SKIP = "skip"
    ALLOW = "allow"
    CANCEL_PREVIOUS = "cancel_previous"


class Catchup(enum.StrEnum):
    NONE = "none"
    LATEST = "latest"
    ALL = "all"


class ScheduleError(DefinitionError):
    """A schedule's fields do not make a schedule; every problem at once."""

    def public_message(self) -> str:
        return f"invalid schedule: {clip(str(self), 1000)}"


@dataclass(frozen=True)
class ScheduleSpec:
    """What a schedule is (not where it stands)."""

    definition_name: str
    cron: str
    time_zone: str = "UTC"
    overlap: Overlap = Overlap.SKIP
    catchup: Catchup = Catchup.NONE
    inputs: dict[str, object] = field(default_factory=dict)
    paused: bool = False
    description: str = ""


@dataclass(frozen=True)
class Plan:
    """What is due at one instant: the nominal times that start a job (oldest first), the
    ones passed over, and the next nominal time after the instant."""

    start: tuple[int, ...]
    skipped: int
    next_at: int
    #: cancel the schedule's unfinished jobs first (overlap cancel_previous)
    cancel_running: bool = False


def _fields(cron: str) -> tuple[str, bool]:
    parts = cron.split()
    return " ".join(parts), len(parts) == 6


def check_spec(spec: ScheduleSpec) -> None:
    """ScheduleError naming every field that is wrong."""
    bad: list[Violation] = []
    if not spec.definition_name:
        bad.append(Violation("definition_name", "is required"))
    expr, seconds = _fields(spec.cron)
    if len(expr.split()) not in (5, 6):
        bad.append(Violation("cron", f"{spec.cron!r} needs 5 fields (minute hour day month "
                                     "weekday) or 6 (seconds first)"))
    elif len(spec.cron) > 200:
        bad.append(Violation("cron", "is over 200 characters"))
    else:
        try:
            croniter(expr, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=seconds)
        except (CroniterBadCronError, ValueError, KeyError) as exc:
            bad.append(Violation("cron", f"{spec.cron!r} is not a cron expression: {exc}"))
    try:
        _zone(spec.time_zone)
    except ValueError as exc:
        bad.append(Violation("time_zone", str(exc)))
    if bad:
        raise ScheduleError(bad)


def _zone(name: str) -> ZoneInfo:
    if not name or len(name) > 100 or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin)") from None


def _us(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def next_after(cron: str, time_zone: str, after_us: int) -> int:
    """The first nominal time strictly after ``after_us``."""
    expr, seconds = _fields(cron)
    zone = _zone(time_zone)
    start = datetime.fromtimestamp(after_us / 1e6, UTC).astimezone(zone)
    try:
        return _us(croniter(expr, start, second_at_beginning=seconds).get_next(datetime))
    except CroniterBadDateError:  # e.g. "0 0 30 2 *": never
        return 2**62


def _due(cron: str, time_zone: str, first: int, now: int, keep: int) -> tuple[list[int], int]:
    """The latest ``keep`` nominal times in [first, now] (oldest first), and how many there
    were (counted up to COUNT_LIMIT: a 1-second schedule after a year's downtime is not
    walked through)."""
    expr, seconds = _fields(cron)
    zone = _zone(time_zone)
    at = datetime.fromtimestamp((now + 1_000_000) // 1_000_000, UTC).astimezone(zone)
    it = croniter(expr, at, second_at_beginning=seconds)
    times: list[int] = []
    while len(times) < keep:
        t = _us(it.get_prev(datetime))
        if t < first:
            break
        if t <= now:
            times.append(t)
    times.reverse()
    if len(times) < keep:
        return times, len(times)
    count, t = 0, first
    while t <= now and count < COUNT_LIMIT:
        count, t = count + 1, next_after(cron, time_zone, t)
    return times, max(count, len(times))


def plan(spec: ScheduleSpec, next_at: int, now: int, running: int) -> Plan:
    """What to start at ``now``, for a schedule whose next nominal time is ``next_at`` and
    which has ``running`` unfinished jobs."""
    if next_at > now:
        return Plan((), 0, next_at)
    keep = CATCHUP_ALL_LIMIT if spec.catchup == Catchup.ALL else 1
    times, count = _due(spec.cron, spec.time_zone, next_at, now, keep)
    nxt = next_after(spec.cron, spec.time_zone, now)
    if spec.catchup == Catchup.NONE and times[-1] < now - CATCHUP_NONE_GRACE_US:
        times = []  # only missed runs: none starts
    if running and spec.overlap == Overlap.SKIP:
        times = []
    start = tuple(times)
    return Plan(start, count - len(start), nxt,
                cancel_running=bool(start) and bool(running)
                and spec.overlap == Overlap.CANCEL_PREVIOUS)
