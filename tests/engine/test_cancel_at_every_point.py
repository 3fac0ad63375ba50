"""Cancel an attempt at each point of its life while the store's thread is slow.

The store's writer thread is delayed (a hook the store calls before each write),
so a cancel lands while writes are queued. Wherever it lands, the invariant
holds: a terminal step has no pending or running child, its counts equal the
child rows of its attempt, and nothing follows the job's terminal event.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from orchestrator_service import codec
from orchestrator_service.executors import InProcessExecutor
from orchestrator_service.model import StepState
from orchestrator_service.statuses import ChildStatus, JobStatus, StepStatus
from orchestrator_service.step_types.base import Child, StepContext, StepType
from orchestrator_service.store.values import StepWrite
from tests.invariants import child_rows, job_problems, rows_problems, step_problems

from .conftest import Harness

DEADLINE = 30


class BlockingInit(StepType):
    """A step whose init waits until cancelled (a slow listing, a remote call)."""

    name = "blocking_init"

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def slow_writes(harness: Harness, seconds: float) -> None:
    harness.store.listeners.before_write = lambda _name: time.sleep(seconds)


async def check(harness: Harness, job_id: str) -> None:
    """Every event, the final state and the child rows agree; the log ends at the terminal event."""
    events = await harness.events(job_id)
    problems = [p for e in events if e.step is not None
                for p in step_problems(codec.step(e.step), f"seq {e.seq}")]
    final = await harness.store.reads.get_job(job_id)
    pb_job = codec.job(final)
    problems += job_problems(pb_job, "final")
    problems += rows_problems(pb_job, child_rows(harness.db), "final")
    assert not problems, "\n".join(problems)
    assert [e.seq for e in events] == list(range(1, final.head_seq + 1))
    assert events[-1].ends_job and sum(e.ends_job for e in events) == 1
    assert final.status.terminal


async def test_cancel_during_init(harness: Harness) -> None:
    blocking = BlockingInit()
    harness.types["blocking_init"] = blocking  # type: ignore[index]
    slow_writes(harness, 0.05)
    j = await harness.submit('name = "t"\n[steps.a]\ntype = "blocking_init"\n')
    await asyncio.wait_for(blocking.entered.wait(), DEADLINE)
    done = await harness.engine.cancel(j.job_id)
    a = done.step("a")
    assert (done.status, a.status, a.children.total) == (JobStatus.CANCELLED, StepStatus.CANCELLED, 0)
    await check(harness, j.job_id)


async def test_cancel_while_children_run(harness: Harness, tmp_path: Path) -> None:
    slow_writes(harness, 0.05)
    cmds = ", ".join(['"true"'] * 3 + ['"sleep 30"'] * 3)
    j = await harness.submit(f'name = "t"\n[steps.a]\ntype = "shell"\ncommands = [{cmds}]\n'
                             'concurrency = 6\n')
    await harness.until(j.job_id, lambda s: s.step("a").children.running >= 3)
    done = await harness.engine.cancel(j.job_id)
    a = done.step("a")
    assert a.status == StepStatus.CANCELLED
    assert (a.children.pending, a.children.running, a.children.total) == (0, 0, 6)
    assert a.children.cancelled >= 3 and a.children.completed + a.children.cancelled == 6
    await check(harness, j.job_id)


async def test_cancel_while_the_attempts_final_write_waits(harness: Harness) -> None:
    reached, release = threading.Event(), threading.Event()
    transitions = 0
    writes = harness.store.writes
    write_steps = writes._write_steps

    def held(job_id: str, batch: Sequence[StepWrite]) -> list[StepState]:
        """On the writer's thread, before the transaction: hold the attempt's end. Counted by
        transitions, not writes: a running attempt's progress may go in a write of its own."""
        nonlocal transitions
        transitions += sum(w.decide is not None for w in batch)
        if transitions == 2 and not reached.is_set():  # 1: the attempt starts; 2: it ends
            reached.set()
            release.wait(DEADLINE)
        return write_steps(job_id, batch)

    writes._write_steps = held  # type: ignore[method-assign]
    cmds = ", ".join(['"true"'] * 5)
    j = await harness.submit(f'name = "t"\n[steps.a]\ntype = "shell"\ncommands = [{cmds}]\n')
    assert await asyncio.to_thread(reached.wait, DEADLINE)
    cancel = asyncio.create_task(harness.engine.cancel(j.job_id))
    # The cancel stops the runner (its step is waiting on the held write), then queues its
    # own write behind the held one; only then does the held one go.
    await asyncio.wait_for(harness.engine.wait(j.job_id), DEADLINE)
    release.set()
    done = await asyncio.wait_for(cancel, DEADLINE)
    a = done.step("a")
    # The attempt's end was asked for before the cancel: it commits, whole, first. Then the
    # cancel finds nothing left to cancel: the job ends as its steps say, not CANCELLED.
    assert a.status == StepStatus.COMPLETED and done.status == JobStatus.COMPLETED
    assert (a.children.completed, a.children.pending, a.children.running) == (5, 0, 0)
    await check(harness, j.job_id)


async def test_timeout_counts_unfinished_children_as_cancelled(harness: Harness) -> None:
    slow_writes(harness, 0.02)
    j = await harness.submit('name = "t"\n[steps.a]\ntype = "shell"\n'
                             'commands = ["true", "sleep 30", "sleep 30"]\ntimeout = 1\n'
                             'concurrency = 1\n')
    done = await harness.finish(j.job_id)
    a = done.step("a")
    assert a.status == StepStatus.FAILED
    assert (a.children.total, a.children.completed, a.children.cancelled) == (3, 1, 2)
    await check(harness, j.job_id)
    assert ChildStatus.CANCELLED  # the enum the rows use


class StuckPrepare(InProcessExecutor):
    """An executor whose preparation never ends (a cluster that does not answer)."""

    async def prepare(self, ctx: StepContext) -> None:
        await asyncio.Event().wait()


async def test_a_timeout_before_the_children_start_writes_them_cancelled(tmp_path: Path) -> None:
    # Init listed the children; the executor was still preparing when time ran out. They
    # are the attempt's children all the same: written, and closed out as cancelled.
    (tmp_path / "ws").mkdir()
    harness = Harness(tmp_path / "db.sqlite", tmp_path / "ws", executor=StuckPrepare)
    try:
        j = await harness.submit('name = "t"\n[steps.a]\ntype = "shell"\n'
                                 'commands = ["true", "sleep 30"]\ntimeout = 0.5\n')
        done = await harness.finish(j.job_id)
        a = done.step("a")
        assert a.status == StepStatus.FAILED and a.failure is not None
        assert "timeout" in a.failure.message
        assert (a.children.total, a.children.cancelled, a.children.pending) == (2, 2, 0)
        await check(harness, j.job_id)
    finally:
        await harness.close()
