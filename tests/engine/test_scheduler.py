"""The scheduler under a fake clock: a real engine and store fire what ``schedules.plan``
says is due, each (schedule, nominal time) once; overlap, catch-up and daylight saving."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator_service.catalog import Catalog
from orchestrator_service.engine import JobAlreadyFinished
from orchestrator_service.scheduler import Scheduler
from orchestrator_service.schedules import Catchup, Overlap, ScheduleSpec
from orchestrator_service.statuses import JobStatus
from orchestrator_service.store.scheduled import ScheduleRecord
from tests.engine.conftest import DEADLINE, Harness

QUICK = 'name = "quick"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'
LONG = 'name = "long"\n[steps.a]\ntype = "shell"\ncommands = ["sleep 60"]\n'
SECOND = 1_000_000
MINUTE = 60 * SECOND


def us(*a: int) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp()) * SECOND  # type: ignore[arg-type, misc]


class FakeClock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class World:
    def __init__(self, harness: Harness, folder: Path, clock: FakeClock) -> None:
        self.h = harness
        self.clock = clock
        self.catalog = Catalog(folder, harness.types)
        self.scheduler = Scheduler(harness.engine, self.catalog, clock=clock)

    async def schedule(self, cron: str, definition: str = "quick", **kw: object) -> ScheduleRecord:
        """Overlap allow unless said: the fake clock outruns the jobs' real time."""
        spec = ScheduleSpec(definition, cron, **{"overlap": Overlap.ALLOW, **kw})  # type: ignore[arg-type]
        return await self.h.store.automation.create_schedule(spec, self.clock())

    async def advance(self, until: int, step: int = 10 * SECOND) -> None:
        """The fake clock moves to ``until`` in steps, the scheduler ticking at each."""
        while self.clock.now < until:
            self.clock.now = min(until, self.clock.now + step)
            await self.scheduler.tick()

    async def jobs_of(self, schedule_id: str) -> list[tuple[int, str, JobStatus]]:
        """(nominal time, job id, status) of the schedule's jobs, by nominal time."""
        jobs, _ = await self.h.store.reads.list_jobs(1000, None, None, "", (None, None))
        return sorted((j.nominal_time or 0, j.job_id, j.status) for j in jobs
                      if j.schedule_id == schedule_id)

    async def until_jobs(self, schedule_id: str, ok: Callable[[list[JobStatus]], bool]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not ok([s for _, _, s in await self.jobs_of(schedule_id)]):
                await asyncio.sleep(0.05)  # polling the store for the runners' progress


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    ws = tmp_path / "ws"
    ws.mkdir()
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "quick.toml").write_text(QUICK)
    (folder / "long.toml").write_text(LONG)
    h = Harness(tmp_path / "engine.db", ws)
    w = World(h, folder, FakeClock(us(2026, 1, 1, 12, 0) + SECOND // 2))
    yield w
    for job_id in list(h.engine._runs):
        with contextlib.suppress(JobAlreadyFinished):
            await h.engine.cancel(job_id)
    await w.scheduler.stop()
    await h.close()


async def test_every_minute_for_ten_simulated_minutes_starts_exactly_ten_jobs(world: World) -> None:
    s = await world.schedule("*/1 * * * *")
    await world.advance(world.clock.now + 10 * MINUTE)
    jobs = await world.jobs_of(s.schedule_id)
    assert [n for n, _, _ in jobs] == [us(2026, 1, 1, 12, m) for m in range(1, 11)]
    await world.until_jobs(s.schedule_id, lambda st: all(x.terminal for x in st))
    assert {st for _, _, st in await world.jobs_of(s.schedule_id)} == {JobStatus.COMPLETED}
    # Ticking again at the same instant starts nothing more.
    assert await world.scheduler.tick() == []
    record = await world.h.store.automation.get_schedule(s.schedule_id)
    assert (record.last_nominal_at, record.next_at, record.skipped) == (
        us(2026, 1, 1, 12, 10), us(2026, 1, 1, 12, 11), 0)
    assert record.last_job_id == jobs[-1][1] and record.last_job_status == JobStatus.COMPLETED


async def test_overlap_skip_starts_nothing_while_its_job_runs(world: World) -> None:
    s = await world.schedule("*/1 * * * *", "long", overlap=Overlap.SKIP)
    await world.advance(us(2026, 1, 1, 12, 1))
    [(_, first, _)] = await world.jobs_of(s.schedule_id)
    await world.advance(us(2026, 1, 1, 12, 6))
    assert [j for _, j, _ in await world.jobs_of(s.schedule_id)] == [first]
    assert (await world.h.store.automation.get_schedule(s.schedule_id)).skipped == 5
    await world.h.engine.cancel(first)
    await world.advance(us(2026, 1, 1, 12, 7))
    jobs = await world.jobs_of(s.schedule_id)
    assert len(jobs) == 2 and jobs[-1][0] == us(2026, 1, 1, 12, 7)


async def test_overlap_cancel_previous_cancels_the_running_job(world: World) -> None:
    s = await world.schedule("*/1 * * * *", "long", overlap=Overlap.CANCEL_PREVIOUS)
    await world.advance(us(2026, 1, 1, 12, 1))
    await world.until_jobs(s.schedule_id, lambda st: st == [JobStatus.RUNNING])
    await world.advance(us(2026, 1, 1, 12, 2))
    await world.until_jobs(s.schedule_id, lambda st: st[0] == JobStatus.CANCELLED
                           and not st[1].terminal)


async def test_catch_up_latest_after_thirty_minutes_down_starts_one(world: World) -> None:
    s = await world.schedule("*/1 * * * *", catchup=Catchup.LATEST)
    await world.advance(us(2026, 1, 1, 12, 1))
    await world.until_jobs(s.schedule_id, lambda st: st == [JobStatus.COMPLETED])
    await world.h.restart()  # down: a new process, a new scheduler
    world.scheduler = Scheduler(world.h.engine, world.catalog, clock=world.clock)
    world.clock.now = us(2026, 1, 1, 12, 31) + 20 * SECOND
    await world.scheduler.tick()
    jobs = await world.jobs_of(s.schedule_id)
    assert [n for n, _, _ in jobs] == [us(2026, 1, 1, 12, 1), us(2026, 1, 1, 12, 31)]
    assert (await world.h.store.automation.get_schedule(s.schedule_id)).skipped == 29


async def test_catch_up_none_after_downtime_starts_nothing_until_the_next_time(world: World) -> None:
    s = await world.schedule("*/10 * * * *")
    world.clock.now = us(2026, 1, 1, 12, 45)
    await world.scheduler.tick()
    assert await world.jobs_of(s.schedule_id) == []
    await world.advance(us(2026, 1, 1, 12, 50))
    assert [n for n, _, _ in await world.jobs_of(s.schedule_id)] == [us(2026, 1, 1, 12, 50)]


async def test_berlin_fall_back_starts_a_job_at_each_instant_the_zone_gives(world: World) -> None:
    world.clock.now = us(2026, 10, 24, 22, 45)  # 00:45 CEST
    s = await world.schedule("30 * * * *", time_zone="Europe/Berlin")
    await world.advance(us(2026, 10, 25, 2, 45), step=5 * MINUTE)  # 03:45 CET
    assert [n for n, _, _ in await world.jobs_of(s.schedule_id)] == [
        us(2026, 10, 24, 23, 30), us(2026, 10, 25, 0, 30), us(2026, 10, 25, 1, 30),
        us(2026, 10, 25, 2, 30)]  # 01:30 CEST, 02:30 CEST, 02:30 CET, 03:30 CET


async def test_berlin_spring_forward_skips_the_wall_time_that_does_not_exist(world: World) -> None:
    world.clock.now = us(2026, 3, 28, 23, 45)  # 00:45 CET
    s = await world.schedule("30 * * * *", time_zone="Europe/Berlin")
    await world.advance(us(2026, 3, 29, 2, 45), step=5 * MINUTE)  # 04:45 CEST
    assert [n for n, _, _ in await world.jobs_of(s.schedule_id)] == [
        us(2026, 3, 29, 0, 30), us(2026, 3, 29, 1, 30), us(2026, 3, 29, 2, 30)]
    # 01:30 CET, 03:30 CEST, 04:30 CEST: no 02:30 that day


async def test_paused_starts_nothing_and_resumed_does_not_catch_up(world: World) -> None:
    s = await world.schedule("*/1 * * * *", paused=True, catchup=Catchup.ALL)
    await world.advance(us(2026, 1, 1, 12, 5))
    assert await world.jobs_of(s.schedule_id) == []
    await world.h.store.automation.set_paused(s.schedule_id, False, world.clock())
    await world.advance(us(2026, 1, 1, 12, 7))
    assert [n for n, _, _ in await world.jobs_of(s.schedule_id)] == [
        us(2026, 1, 1, 12, 6), us(2026, 1, 1, 12, 7)]


async def test_a_definition_gone_from_the_catalog_is_recorded_not_fatal(world: World) -> None:
    s = await world.schedule("*/1 * * * *")
    (world.catalog.folder / "quick.toml").unlink()  # type: ignore[operator]
    await world.advance(us(2026, 1, 1, 12, 1))
    record = await world.h.store.automation.get_schedule(s.schedule_id)
    assert "quick" in record.last_error and record.skipped == 1
    assert await world.jobs_of(s.schedule_id) == []
    (world.catalog.folder / "quick.toml").write_text(QUICK)  # type: ignore[operator]
    await world.advance(us(2026, 1, 1, 12, 2))
    record = await world.h.store.automation.get_schedule(s.schedule_id)
    assert record.last_error == "" and len(await world.jobs_of(s.schedule_id)) == 1
