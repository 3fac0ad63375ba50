"""A runner that hits an error never leaves its job silently RUNNING.

A storage fault (disk full, read-only, I/O, a lost connection) makes the job
wait and go on when it clears; any other error (a bug, a bad statement) ends
the job FAILED with FAILURE_REASON_INTERNAL_ERROR and a message a person can
act on.
"""

from __future__ import annotations

import sqlite3

import pytest
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

    harness.store.listeners.before_write = hook
    return seen


async def test_a_transient_store_error_is_retried_and_the_job_goes_on(harness: Harness) -> None:
    seen = failing_writes(harness, "write_steps", 2, "database is locked")
    j = await harness.submit(JOB)
    done = await harness.finish(j.job_id)
    assert seen == [2]
    assert done.status == JobStatus.COMPLETED and done.step("a").status == StepStatus.COMPLETED
    await check(harness, j.job_id)


@pytest.mark.parametrize("fault", ["database or disk is full", "attempt to write a readonly database",
                                   "disk I/O error"])
async def test_a_storage_fault_makes_jobs_wait_then_go_on(harness: Harness, fault: str) -> None:
    changes: list[tuple[bool, str]] = []
    harness.store.health.on_availability = lambda ok, why: changes.append((ok, why))
    seen = failing_writes(harness, "write_steps", 5, fault)
    j = await harness.submit(JOB)
    done = await harness.finish(j.job_id)
    assert seen == [5]
    # Not failed for it, not left pretending: it waited, then finished as it would have.
    assert done.status == JobStatus.COMPLETED and done.step("a").status == StepStatus.COMPLETED
    assert changes == [(False, fault), (True, "")]
    await check(harness, j.job_id)


async def test_a_database_error_that_is_not_storage_ends_with_internal_error(
        harness: Harness) -> None:
    failing_writes(harness, "write_steps", 1000, 'near "SELEC": syntax error')
    j = await harness.submit(JOB)
    done = await harness.finish(j.job_id)
    assert done.status == JobStatus.FAILED
    assert done.failure is not None and done.failure.reason == FailureReason.INTERNAL_ERROR
    assert "syntax error" in done.failure.message
    a = done.step("a")
    assert a.status == StepStatus.SKIPPED and a.failure is not None  # never started
    await check(harness, j.job_id)


async def test_a_bug_in_the_runner_ends_the_job_with_internal_error(harness: Harness) -> None:
    executor = harness.engine.config.executor

    async def broken(*args: object) -> None:
        raise KeyError("a bug")

    executor.prepare = broken  # type: ignore[method-assign]
    j = await harness.submit(JOB)
    done = await harness.finish(j.job_id)
    a = done.step("a")
    assert done.status == JobStatus.FAILED and a.status == StepStatus.FAILED
    assert a.failure is not None and a.failure.reason == FailureReason.INTERNAL_ERROR
    assert "KeyError" in a.failure.message and "a bug" in a.failure.message
    await check(harness, j.job_id)
