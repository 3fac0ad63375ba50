"""Children of a synchronous step type (run_child_sync) run on worker threads in batches
(batches.py): each child's status, times, log lines, result and the step's counts must be
exactly what one task per child gave, on SQLite and PostgreSQL; a failure past the
tolerance, a StepFailed and a cancel stop the threads as they stopped the tasks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator_service.batches import THREADS
from orchestrator_service.statuses import ChildStatus, JobStatus, LogStream, StepStatus
from orchestrator_service.step_types.base import (
    Child,
    DocumentPut,
    StepContext,
    StepFailed,
    StepType,
)

from .conftest import DEADLINE, Harness
from .test_cancel_at_every_point import check


class Numbers(StepType):
    """``n`` children; child i logs a line, declares its square, and fails when i is a
    multiple of ``fail_every``; ``step_fail_at`` raises StepFailed; ``block_at`` waits
    (in its thread) until released."""

    name = "numbers"
    sync_children = True

    def __init__(self) -> None:
        self.release = threading.Event()
        self.blocked = threading.Event()
        self.ran: set[int] = set()

    def validate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return dict(options)

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        return [Child(key=f"n{i}", payload=i) for i in range(ctx.options["n"])]

    def run_child_sync(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        i = int(child.payload)
        self.ran.add(i)
        if i == ctx.options.get("block_at"):
            self.blocked.set()
            assert self.release.wait(DEADLINE)
        ctx.log(f"child {i} here")
        ctx.log(f"child {i} to stderr", LogStream.STDERR)
        ctx.result(str(i * i))
        if i == ctx.options.get("step_fail_at"):
            raise StepFailed(f"child {i} says the whole step is off")
        every = ctx.options.get("fail_every")
        if every and i % every == 0:
            raise ValueError(f"{i} is a multiple of {every}")
        return [DocumentPut(f"doc{i}", tags=("n",), attrs={"square": i * i})]


def numbers(harness: Harness) -> Numbers:
    probe = Numbers()
    harness.types["numbers"] = probe  # type: ignore[index]
    return probe


def toml(**options: object) -> str:
    opts = "".join(f"{k} = {v!r}\n" for k, v in options.items())
    return f'name = "t"\n[steps.a]\ntype = "numbers"\nconcurrency = 8\n{opts}'


async def test_every_child_is_recorded_as_it_ran(harness: Harness) -> None:
    numbers(harness)
    j = await harness.submit(toml(n=300, fail_every=7, max_child_failures=1000))
    done = await harness.finish(j.job_id)
    a = done.step("a")
    failed = len(range(0, 300, 7))
    assert (done.status, a.status) == (JobStatus.COMPLETED, StepStatus.COMPLETED)
    assert (a.children.total, a.children.completed, a.children.failed) == (300, 300 - failed, failed)
    assert a.document_count == 300 - failed
    rows, _ = await harness.store.reads.list_children(a.step_id, 1, None, False, 1000, None)
    assert len(rows) == 300
    for r in rows:
        want = ChildStatus.FAILED if r.index % 7 == 0 else ChildStatus.COMPLETED
        assert r.status == want, r
        assert r.started_at is not None and r.finished_at is not None
        assert r.started_at <= r.finished_at
        assert r.result == str(r.index * r.index)
        if want == ChildStatus.FAILED:
            assert r.error == f"n{r.index}: {r.index} is a multiple of 7"
    page = await harness.store.reads.read_logs(a.step_id, 1, 0, 10_000, None)
    lines = {(c.child, c.stream, c.text) for c in page.chunks}
    for i in range(300):
        assert (i, LogStream.SYSTEM, f"child {i} here\n") in lines
        assert (i, LogStream.STDERR, f"child {i} to stderr\n") in lines
    await check(harness, j.job_id)


async def test_past_the_tolerance_no_more_children_start(harness: Harness) -> None:
    probe = numbers(harness)
    j = await harness.submit(toml(n=2000, fail_every=1, max_child_failures=2))
    done = await harness.finish(j.job_id)
    a = done.step("a")
    assert (done.status, a.status) == (JobStatus.FAILED, StepStatus.FAILED)
    assert a.failure is not None
    assert a.failure.message.startswith(f"{a.children.failed} children failed, more than "
                                        "max_child_failures = 2; first: n"), a.failure
    # Each thread finishes the child in hand, then takes no other: the third failure, and
    # at most one more child per other thread.
    assert a.children.failed == len(probe.ran) <= 3 + THREADS - 1
    assert a.children.cancelled == 2000 - len(probe.ran)
    await check(harness, j.job_id)


async def test_step_failed_in_a_child_fails_the_step_with_its_message(harness: Harness) -> None:
    numbers(harness)
    j = await harness.submit(toml(n=500, step_fail_at=3))
    done = await harness.finish(j.job_id)
    a = done.step("a")
    assert a.status == StepStatus.FAILED
    assert a.failure is not None and a.failure.message == "child 3 says the whole step is off"
    await check(harness, j.job_id)


async def test_a_cancel_stops_the_threads_and_nothing_is_recorded_after(harness: Harness) -> None:
    probe = numbers(harness)
    j = await harness.submit(toml(n=1000, block_at=5))
    await asyncio.wait_for(asyncio.to_thread(probe.blocked.wait, DEADLINE), DEADLINE)
    await harness.until(j.job_id, lambda s: s.step("a").children.running >= 1)
    done = await harness.engine.cancel(j.job_id)
    ran_at_cancel = len(probe.ran)
    probe.release.set()
    a = done.step("a")
    assert (done.status, a.status) == (JobStatus.CANCELLED, StepStatus.CANCELLED)
    assert a.children.running == a.children.pending == 0
    assert a.children.completed + a.children.failed + a.children.cancelled == 1000
    # The blocked thread ends its child and takes no other; the final state never changes.
    await check(harness, j.job_id)
    again = await harness.store.reads.get_job(j.job_id)
    assert again.step("a").children == a.children
    assert len(probe.ran) <= ran_at_cancel + 1


async def test_what_a_thread_did_is_seen_while_its_next_child_still_runs(harness: Harness) -> None:
    """One thread: child 0 ends at once, child 1 blocks; child 0's completion reaches the job
    while child 1 still runs (it is not held back until the thread's next outcome)."""
    probe = numbers(harness)
    j = await harness.submit(toml(n=2, block_at=1).replace("concurrency = 8", "concurrency = 1"))
    await asyncio.wait_for(asyncio.to_thread(probe.blocked.wait, DEADLINE), DEADLINE)
    try:
        seen = await harness.until(j.job_id, lambda s: s.step("a").children.completed == 1
                                   and s.step("a").children.running == 1)
        assert seen.step("a").children.pending == 0
    finally:
        probe.release.set()
    done = await harness.finish(j.job_id)
    assert done.step("a").children.completed == 2
