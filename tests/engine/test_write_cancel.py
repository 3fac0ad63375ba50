"""A write once asked for is committed, whatever happens to whoever asked (runner.py): a
caller cancelled while its write waits on the writer thread, or while it runs there, gets
CancelledError, and the write commits all the same; its events are published as any
other's. And a cancelled caller's write that fails leaves no unretrieved error behind."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

from orchestrator_service import rules
from orchestrator_service.definitions import parse_definition
from orchestrator_service.model import JobState
from orchestrator_service.statuses import JobStatus
from orchestrator_service.store import JobNotFound, now_us

from .conftest import Harness

ONE_STEP = 'name = "t"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'


async def _new_job(harness: Harness) -> JobState:
    job, _ = await harness.store.writes.create_job(parse_definition(ONE_STEP, harness.types),
                                                   ONE_STEP)
    return job


def _hold_first(harness: Harness, name: str) -> tuple[threading.Event, threading.Event]:
    """The first write called ``name`` waits on the writer thread until released."""
    entered, release = threading.Event(), threading.Event()

    def hook(write: str) -> None:
        if write == name and not entered.is_set():
            entered.set()
            assert release.wait(30), "never released"

    harness.store.listeners.before_write = hook
    return entered, release


async def _status(harness: Harness, job_id: str, want: JobStatus, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while (await harness.store.reads.get_job(job_id)).status != want:
        assert time.monotonic() < deadline, f"job {job_id} never became {want.name}"
        await asyncio.sleep(0.01)


async def test_a_write_whose_caller_is_cancelled_is_committed(harness: Harness) -> None:
    first, queued = await _new_job(harness), await _new_job(harness)
    published: list[str] = []
    harness.broker.taps.append(lambda evs: published.extend(e.job_id for e in evs))
    entered, release = _hold_first(harness, "decide_job")
    start = harness.store.writes.decide_job
    running = asyncio.create_task(start(first.job_id, lambda j: rules.start_job(j, now_us())))
    assert await asyncio.to_thread(entered.wait, 10)
    # Cancelled while its write waits behind the one on the writer thread.
    waiting = asyncio.create_task(start(queued.job_id, lambda j: rules.start_job(j, now_us())))
    await asyncio.sleep(0)
    waiting.cancel()
    # And the one running on the thread: cancelled too.
    running.cancel()
    release.set()
    for task in (running, waiting):
        with pytest.raises(asyncio.CancelledError):
            await task
    await _status(harness, first.job_id, JobStatus.RUNNING)
    await _status(harness, queued.job_id, JobStatus.RUNNING)
    deadline = time.monotonic() + 10
    while not {first.job_id, queued.job_id} <= set(published):
        assert time.monotonic() < deadline, "a committed write's events were not published"
        await asyncio.sleep(0.01)


async def test_a_cancelled_callers_failed_write_leaves_no_unretrieved_error(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    entered, release = _hold_first(harness, "decide_job")
    missing = "0" * 32
    task = asyncio.create_task(harness.store.writes.decide_job(
        missing, lambda j: rules.start_job(j, now_us())))
    assert await asyncio.to_thread(entered.wait, 10)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The write ran (and raised JobNotFound on the thread): a later write goes through.
    job = await _new_job(harness)
    await harness.store.writes.decide_job(job.job_id, lambda j: rules.start_job(j, now_us()))
    gc.collect()
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    with pytest.raises(JobNotFound):
        await harness.store.writes.decide_job(missing, lambda j: rules.start_job(j, now_us()))
