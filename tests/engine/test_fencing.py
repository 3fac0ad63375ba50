"""Fencing, driven at the store directly: a write names its attempt; stale and late writes are refused.

Nothing is written by a refused call: the head seq, the step and the child rows stay as they were.
"""

from __future__ import annotations

import asyncio

import pytest

from orchestrator_service import rules
from orchestrator_service.definitions import parse_definition
from orchestrator_service.model import ChildCounts, JobState
from orchestrator_service.statuses import ChildStatus, JobStatus, Policy, StepStatus
from orchestrator_service.store import ChildChange, ProgressBatch, StaleWrite, StepWrite

from .conftest import Harness

ONE_STEP = 'name = "t"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'


async def _a_running_step(harness: Harness) -> JobState:
    """A job whose step `a` is RUNNING at attempt 1, written by hand (no runner)."""
    job, _ = await harness.store.writes.create_job(parse_definition(ONE_STEP, harness.types), ONE_STEP)
    a = job.step("a")
    await harness.store.writes.decide_job(job.job_id, lambda j: rules.start_job(j, 1))
    await harness.store.writes.write_steps(
        job.job_id, [StepWrite(a.step_id, 0, lambda s: rules.start_attempt(s, 2))])
    await harness.store.writes.record_progress(ProgressBatch(
        a.step_id, 1, [], [], ChildCounts(total=2, pending=2), 0, new_children=["x", "y"]))
    return await harness.store.reads.get_job(job.job_id)


def _progress(step_id: str, attempt: int) -> ProgressBatch:
    return ProgressBatch(step_id, attempt, [ChildChange(0, ChildStatus.COMPLETED, 5)], [],
                         ChildCounts(total=2, pending=1, completed=1), 0)


async def test_writes_for_another_attempt_are_refused(harness: Harness) -> None:
    job = await _a_running_step(harness)
    a = job.step("a")
    for attempt in (0, 2, 7):
        with pytest.raises(StaleWrite, match=f"refused a write for attempt {attempt}"):
            await harness.store.writes.write_steps(job.job_id, [StepWrite(
                a.step_id, attempt, lambda s: rules.attempt_succeeded(s, 3))])
        with pytest.raises(StaleWrite):
            await harness.store.writes.record_progress(_progress(a.step_id, attempt))
        with pytest.raises(StaleWrite):  # progress alone, as a running attempt's group writes it
            await harness.store.writes.write_steps(job.job_id, [StepWrite(
                a.step_id, attempt, None, _progress(a.step_id, attempt))])
        with pytest.raises(StaleWrite):
            await harness.store.writes.record_progress(ProgressBatch(
                a.step_id, attempt, [], [], ChildCounts(total=1, pending=1), 0, new_children=["z"]))
    assert await harness.store.reads.get_job(job.job_id) == job  # nothing written, no event appended
    # The right attempt is accepted, and ends with its children closed out.
    [done] = await harness.store.writes.write_steps(job.job_id, [StepWrite(
        a.step_id, 1, lambda s: rules.attempt_succeeded(s, 3), _progress(a.step_id, 1))])
    assert done.status == StepStatus.COMPLETED
    assert done.children == ChildCounts(total=2, completed=1, cancelled=1)


async def test_nothing_is_written_after_the_terminal_event(harness: Harness) -> None:
    j = await harness.submit(ONE_STEP)
    done = await harness.finish(j.job_id)
    assert done.status == JobStatus.COMPLETED
    a = done.step("a")
    attempts = [
        harness.store.writes.write_steps(j.job_id, [StepWrite(a.step_id, a.attempt,
                                                       lambda s: rules.attempt_succeeded(s, 9))]),
        harness.store.writes.record_progress(_progress(a.step_id, a.attempt)),
        harness.store.writes.write_steps(j.job_id, [StepWrite(a.step_id, a.attempt, None,
                                                              _progress(a.step_id, a.attempt))]),
        harness.store.writes.record_progress(ProgressBatch(
            a.step_id, a.attempt, [], [], ChildCounts(total=1, pending=1), 0,
            new_children=["again"])),
        harness.store.writes.decide_job(j.job_id, lambda job: rules.cancel(job, 9)),
    ]
    for call in attempts:
        with pytest.raises(StaleWrite, match="terminal|COMPLETED"):
            await call
    assert await harness.store.reads.get_job(j.job_id) == done
    events = await harness.events(j.job_id)
    assert events[-1].seq == done.head_seq and events[-1].ends_job


async def test_concurrent_stale_writers_cannot_interleave_an_attempt(harness: Harness) -> None:
    """Many writers for attempt 1 race; exactly one ends it, the rest are refused."""
    job = await _a_running_step(harness)
    a = job.step("a")
    results = await asyncio.gather(*(harness.store.writes.write_steps(job.job_id, [StepWrite(
        a.step_id, 1, lambda s: rules.attempt_failed(
            s, rules.timed_out(1), Policy.STOP, 5))]) for _ in range(20)),
        return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, StaleWrite) for r in results if isinstance(r, BaseException))
    final = await harness.store.reads.get_job(job.job_id)
    assert final.step("a").status == StepStatus.FAILED
