"""Schedules as pure rules: cron in a time zone (DST included), what is due, and what starts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_service.schedules import (
    CATCHUP_ALL_LIMIT,
    Catchup,
    Overlap,
    ScheduleError,
    ScheduleSpec,
    check_spec,
    next_after,
    plan,
)

MIN = 60_000_000


def us(*a: int) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp()) * 1_000_000  # type: ignore[arg-type, misc]


def utc(t: int) -> str:
    return datetime.fromtimestamp(t / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


def walk(cron: str, zone: str, start: int, n: int) -> list[str]:
    out, t = [], start
    for _ in range(n):
        t = next_after(cron, zone, t)
        out.append(utc(t))
    return out


def test_berlin_spring_forward_runs_each_real_hour_once_and_skips_the_missing_wall_time() -> None:
    # 2026-03-29 02:00 CET does not exist in Berlin (clocks go to 03:00 CEST).
    assert walk("30 * * * *", "Europe/Berlin", us(2026, 3, 28, 23, 0), 4) == [
        "2026-03-28 23:30:00",  # 00:30 CET
        "2026-03-29 00:30:00",  # 01:30 CET
        "2026-03-29 01:30:00",  # 03:30 CEST (02:30 never happened)
        "2026-03-29 02:30:00",  # 04:30 CEST
    ]


def test_berlin_fall_back_runs_the_repeated_wall_time_at_both_instants() -> None:
    # 2026-10-25 03:00 CEST goes back to 02:00 CET: 02:30 happens twice.
    assert walk("30 * * * *", "Europe/Berlin", us(2026, 10, 24, 22, 45), 4) == [
        "2026-10-24 23:30:00",  # 01:30 CEST
        "2026-10-25 00:30:00",  # 02:30 CEST
        "2026-10-25 01:30:00",  # 02:30 CET
        "2026-10-25 02:30:00",  # 03:30 CET
    ]


def test_a_daily_time_follows_the_zone_across_the_change() -> None:
    # 09:00 Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
    assert walk("0 9 * * *", "Europe/Berlin", us(2026, 3, 27, 12, 0), 3) == [
        "2026-03-28 08:00:00", "2026-03-29 07:00:00", "2026-03-30 07:00:00"]


def test_six_fields_have_seconds_first() -> None:
    assert walk("*/15 * * * * *", "UTC", us(2026, 1, 1, 0, 0), 3) == [
        "2026-01-01 00:00:15", "2026-01-01 00:00:30", "2026-01-01 00:00:45"]


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(ScheduleError) as e:
        check_spec(ScheduleSpec("", "61 * * * *", "Mars/Olympus"))
    assert {v.field for v in e.value.violations} == {"definition_name", "cron", "time_zone"}
    for cron in ("* * *", "* * * * * * *", "a b c d e", "*/0 * * * *"):
        with pytest.raises(ScheduleError):
            check_spec(ScheduleSpec("d", cron))
    for zone in ("../../etc/passwd", "/etc/localtime", "", "x" * 200):
        with pytest.raises(ScheduleError):
            check_spec(ScheduleSpec("d", "* * * * *", zone))


EVERY_MIN = ScheduleSpec("d", "*/1 * * * *")
T0 = us(2026, 1, 1, 12, 1)


@pytest.mark.parametrize(("catchup", "starts", "skipped"), [
    (Catchup.NONE, 0, 4), (Catchup.LATEST, 1, 3), (Catchup.ALL, 4, 0)])
def test_catch_up_after_downtime(catchup: Catchup, starts: int, skipped: int) -> None:
    spec = ScheduleSpec("d", "*/10 * * * *", catchup=catchup)
    first = us(2026, 1, 1, 12, 10)
    now = us(2026, 1, 1, 12, 42)  # 12:10, 12:20, 12:30, 12:40 missed; the last 2 min ago
    p = plan(spec, first, now, running=0)
    assert (len(p.start), p.skipped) == (starts, skipped)
    assert p.next_at == us(2026, 1, 1, 12, 50)
    if starts:
        assert p.start[-1] == us(2026, 1, 1, 12, 40)


def test_catch_up_latest_after_thirty_minutes_down_starts_one() -> None:
    spec = ScheduleSpec("d", "*/1 * * * *", catchup=Catchup.LATEST)
    p = plan(spec, T0, T0 + 30 * MIN + 20_000_000, running=0)
    assert p.start == (T0 + 30 * MIN,) and p.skipped == 30


def test_catch_up_all_is_bounded() -> None:
    spec = ScheduleSpec("d", "* * * * * *", catchup=Catchup.ALL)
    p = plan(spec, T0, T0 + 3600 * 1_000_000, running=0)
    assert len(p.start) == CATCHUP_ALL_LIMIT
    assert p.start[-1] == T0 + 3600 * 1_000_000


def test_a_due_time_within_the_grace_starts_even_without_catch_up() -> None:
    assert plan(EVERY_MIN, T0, T0 + 2_000_000, running=0).start == (T0,)


@pytest.mark.parametrize(("overlap", "starts", "cancel"), [
    (Overlap.SKIP, 0, False), (Overlap.ALLOW, 1, False), (Overlap.CANCEL_PREVIOUS, 1, True)])
def test_overlap_with_a_job_still_running(overlap: Overlap, starts: int, cancel: bool) -> None:
    spec = ScheduleSpec("d", "*/1 * * * *", overlap=overlap)
    p = plan(spec, T0, T0, running=1)
    assert (len(p.start), p.skipped, p.cancel_running) == (starts, 1 - starts, cancel)
    assert plan(spec, T0, T0, running=0).cancel_running is False


def test_nothing_is_due_before_next_at() -> None:
    p = plan(EVERY_MIN, T0, T0 - 1, running=0)
    assert (p.start, p.skipped, p.next_at) == ((), 0, T0)


CRONS = ["*/1 * * * *", "*/7 * * * *", "0 */2 * * *", "*/5 * * * * *", "30 2 * * *"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]


@settings(max_examples=150, deadline=None)
@given(cron=st.sampled_from(CRONS), zone=st.sampled_from(ZONES),
       catchup=st.sampled_from(list(Catchup)), overlap=st.sampled_from(list(Overlap)),
       start=st.integers(us(2026, 1, 1), us(2027, 1, 1)), gap=st.integers(0, 3 * 3600 * 10**6),
       running=st.integers(0, 2))
def test_plan_properties(cron: str, zone: str, catchup: Catchup, overlap: Overlap, start: int,
                         gap: int, running: int) -> None:
    """What starts is due (in [next_at, now], increasing, each a nominal time); starts and
    skips account for every due time (up to the count bound); next_at is the first after now."""
    spec = ScheduleSpec("d", cron, zone, overlap, catchup)
    first = next_after(cron, zone, start)
    now = first + gap
    p = plan(spec, first, now, running)
    assert all(first <= t <= now for t in p.start)
    assert list(p.start) == sorted(set(p.start))
    for t in p.start:
        assert next_after(cron, zone, t - 1) == t
    assert p.next_at > now and next_after(cron, zone, now) == p.next_at
    assert len(p.start) >= 1 or catchup == Catchup.NONE or (running and overlap == Overlap.SKIP)
    if running and overlap == Overlap.SKIP:
        assert p.start == ()
    if catchup != Catchup.ALL:
        assert len(p.start) <= 1
