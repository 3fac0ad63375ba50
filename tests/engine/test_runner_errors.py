"""A runner that hits an error never leaves its job silently RUNNING.

Transient store errors are retried with backoff and the job goes on; an error
that does not pass (a store that keeps failing, a bug) ends the job FAILED
with FAILURE_REASON_INTERNAL_ERROR and a message a person can act on.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import OperationalError

from orchestrator_service.statuses import FailureReason, JobStatus, StepStatus

from .conftest import Harness
from .test_cancel_at_every_point import check

JOB = 'name = "t"\n[steps.a]\ntype = "shell"\ncommands = ["true", "true"]\n'


def failing_writes(harness: Harness, name: str, times: int, message: str) -> list[int]:
    seen = [0]

    def hook(write: str) -> None:
        if write == name and seen[0] < times:
            seen[0] += 1
            raise OperationalError("UPDATE ...", {}, sqlite3.OperationalError(message))

    harness.store.before_write = hook
    return seen


async def test_a_transient_store_error_is_retried_and_the_job_goes_on(harness: Harness) -> None:
    seen = failing_writes(harness, "write_steps", 2, "database is locked")
    j = await harness.submit(JOB)
    done = await harness.finish(j.job_id)
    assert seen == [2]
    assert done.status == JobStatus.COMPLETED and done.step("a").status == StepStatus.COMPLETED
    await check(harness, j.job_id)


async def test_a_store_that_keeps_failing_ends_the_job_with_internal_error(harness: Harness) -> None:
    seen = failing_writes(harness, "write_steps", 1000, "disk I/O error")
    j = await harness.submit(JOB)
    done = await harness.finish(j.job_id)
    assert seen[0] >= 2  # retried before giving up
    assert done.status == JobStatus.FAILED
    assert done.failure is not None and done.failure.reason == FailureReason.INTERNAL_ERROR
    assert "storage unavailable: disk I/O error" in done.failure.message
    a = done.step("a")
    assert a.status == StepStatus.SKIPPED and a.failure is not None  # never started
    await check(harness, j.job_id)


async def test_a_bug_in_the_runner_ends_the_job_with_internal_error(harness: Harness) -> None:
    real = harness.store.start_children

    async def broken(*args: object) -> object:
        raise KeyError("a bug")

    harness.store.start_children = broken  # type: ignore[method-assign]
    j = await harness.submit(JOB)
    done = await harness.finish(j.job_id)
    harness.store.start_children = real  # type: ignore[method-assign]
    a = done.step("a")
    assert done.status == JobStatus.FAILED and a.status == StepStatus.FAILED
    assert a.failure is not None and a.failure.reason == FailureReason.INTERNAL_ERROR
    assert "KeyError" in a.failure.message and "a bug" in a.failure.message
    await check(harness, j.job_id)
