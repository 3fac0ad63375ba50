"""A step's start rides on the commit of the end that made it ready (jobrun.py), and the
slot goes with it: one write a chain step, not two. The start is written only if that end
is written COMPLETED, whichever transaction the two end up in; the hand-over never lets
more steps run than there are slots, never jumps a step that waits for one, and leaves no
slot behind when the job is cancelled or stopped around it."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from orchestrator_service import rules
from orchestrator_service.definitions import parse_definition
from orchestrator_service.engine import Engine, RunConfig
from orchestrator_service.executors import InProcessExecutor
from orchestrator_service.grouping import StepWriteGroup
from orchestrator_service.model import Failure, JobState, StepState
from orchestrator_service.slots import Slots
from orchestrator_service.statuses import FailureReason, JobStatus, Policy, StepStatus
from orchestrator_service.store import StaleWrite, StepWrite, now_us
from tests.support import eventually

from .conftest import DEADLINE, Harness


def _chain(n: int, command: str = "true", policy: str = "stop") -> str:
    lines = [f'name = "chain"\n[policy]\non_step_failure = "{policy}"']
    for i in range(n):
        lines.append(f'[steps.s{i}]\ntype = "shell"\ncommands = ["{command}"]')
        if i:
            lines.append(f'depends = ["s{i - 1}"]')
    return "\n".join(lines) + "\n"


def _limited(harness: Harness, slots: int) -> Engine:
    """The harness's store under an engine of ``slots`` slots."""
    harness.engine = Engine(harness.store, harness.types,
                            RunConfig(harness.workspace, progress_interval=0.05,
                                      max_running_steps=slots),
                            executor=InProcessExecutor())
    return harness.engine


def _count_writes(harness: Harness) -> Counter[str]:
    writes: Counter[str] = Counter()
    harness.store.listeners.before_write = lambda name: writes.update([name])
    return writes


async def _started(harness: Harness, a_b: str) -> tuple[JobState, StepState, StepState]:
    """A job of steps a -> b, created in the store (no engine runs it), a started."""
    job, _ = await harness.store.writes.create_job(parse_definition(a_b, harness.types), a_b)
    a, b = job.steps
    [a] = await harness.store.writes.write_steps(
        job.job_id, [StepWrite(a.step_id, 0, lambda s: rules.start_attempt(s, now_us()))])
    return job, a, b


A_B = ('name = "ab"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'
       '[steps.b]\ntype = "shell"\ncommands = ["true"]\ndepends = ["a"]\n')


def _start_after(a: StepState, b: StepState) -> StepWrite:
    return StepWrite(b.step_id, b.attempt, lambda s: rules.start_attempt(s, now_us()),
                     after=(a.step_id, StepStatus.COMPLETED))


async def test_a_chain_writes_once_a_step_and_every_start_follows_its_dependency(
        harness: Harness) -> None:
    n = 12
    harness.engine = _limited(harness, 4)
    writes = _count_writes(harness)
    job = await harness.submit(_chain(n))
    done = await harness.finish(job.job_id)
    assert done.status == JobStatus.COMPLETED
    assert [s.status for s in done.steps] == [StepStatus.COMPLETED] * n
    # One start (the first step's), then one write per step: its end and its successor's start.
    assert writes["write_steps"] == n + 1, writes
    moves = [(e.step.name, e.step.status) for e in await harness.events(job.job_id)
             if e.step is not None and e.step.status in (StepStatus.RUNNING, StepStatus.COMPLETED)]
    for i in range(1, n):
        assert moves.index((f"s{i - 1}", StepStatus.COMPLETED)) < moves.index(
            (f"s{i}", StepStatus.RUNNING)), moves
    for before, after in zip(done.steps, done.steps[1:], strict=False):
        assert before.finished_at is not None and after.started_at is not None
        assert before.finished_at <= after.started_at


async def test_a_start_is_written_only_after_its_end_is_written_completed(
        harness: Harness) -> None:
    job, a, b = await _started(harness, A_B)
    failed = Failure(FailureReason.EXECUTION_FAILED, "exit 1")
    a2, b2 = await harness.store.writes.write_steps(job.job_id, [
        StepWrite(a.step_id, a.attempt, lambda s: rules.attempt_failed(s, failed, Policy.STOP,
                                                                       now_us())),
        _start_after(a, b)])
    assert a2.status == StepStatus.FAILED
    assert b2 == b  # left as it was: PENDING, no write
    stored = await harness.store.reads.get_job(job.job_id)
    assert stored.steps[1].status == StepStatus.PENDING
    assert not [e for e in await harness.events(job.job_id)
                if e.step is not None and e.step.name == "b" and e.seq > 0
                and e.step.status != StepStatus.PENDING]


async def test_a_start_after_a_completed_end_is_written_with_it(harness: Harness) -> None:
    job, a, b = await _started(harness, A_B)
    a2, b2 = await harness.store.writes.write_steps(job.job_id, [
        StepWrite(a.step_id, a.attempt, lambda s: rules.attempt_succeeded(s, now_us())),
        _start_after(a, b)])
    assert (a2.status, b2.status, b2.attempt) == (StepStatus.COMPLETED, StepStatus.RUNNING, 1)
    # Alone in a later transaction, its condition is read from the committed row.
    job2, c, d = await _started(harness, A_B)
    [c2] = await harness.store.writes.write_steps(job2.job_id, [
        StepWrite(c.step_id, c.attempt, lambda s: rules.attempt_succeeded(s, now_us()))])
    [d2] = await harness.store.writes.write_steps(job2.job_id, [_start_after(c, d)])
    assert (c2.status, d2.status) == (StepStatus.COMPLETED, StepStatus.RUNNING)


async def test_a_refused_end_refuses_the_start_riding_on_it(harness: Harness) -> None:
    """The end is fenced out (a stale attempt): the group fails, is tried write by write,
    and the start, alone now, reads the end's step as it was: not COMPLETED."""
    job, a, b = await _started(harness, A_B)
    group = StepWriteGroup(lambda ws: harness.store.writes.write_steps(job.job_id, ws))
    end = group.submit(StepWrite(a.step_id, a.attempt + 1,
                                 lambda s: rules.attempt_succeeded(s, now_us())))
    start = group.submit(_start_after(a, b))
    with pytest.raises(StaleWrite):
        await end
    assert (await start) == b
    stored = await harness.store.reads.get_job(job.job_id)
    assert [s.status for s in stored.steps] == [StepStatus.RUNNING, StepStatus.PENDING]


def _intervals(*jobs: JobState) -> list[tuple[int, int, str]]:
    out = []
    for j in jobs:
        for s in j.steps:
            assert s.started_at is not None and s.finished_at is not None, s
            out.append((s.started_at, s.finished_at, f"{j.job_id[:6]}/{s.name}"))
    return sorted(out)


async def test_no_hand_over_past_a_step_waiting_for_a_slot(harness: Harness,
                                                           tmp_path: Path) -> None:
    """One slot: while the chain's first step runs, another job's step waits for the slot.
    When the first step ends, the waiting step runs next, not the chain's second step."""
    engine = _limited(harness, 1)
    go = harness.workspace / "go"
    chain = await harness.submit(_chain(2, f"while [ ! -e {go} ]; do sleep 0.01; done"))
    await harness.until(chain.job_id, lambda j: j.steps[0].status == StepStatus.RUNNING)
    other = await harness.submit(_chain(1))
    slots = engine.config.slots
    assert isinstance(slots, Slots)
    await eventually(lambda: slots.contended, DEADLINE, "the other job's step waits for the slot")
    go.touch()
    first, second = await harness.finish(chain.job_id), await harness.finish(other.job_id)
    assert first.status == second.status == JobStatus.COMPLETED
    order = [name for _, _, name in _intervals(first, second)]
    assert order == [f"{chain.job_id[:6]}/s0", f"{other.job_id[:6]}/s0",
                     f"{chain.job_id[:6]}/s1"], order


async def test_hand_overs_never_run_more_steps_than_slots(harness: Harness) -> None:
    engine = _limited(harness, 2)
    jobs = [await harness.submit(_chain(6)) for _ in range(5)]
    done = [await harness.finish(j.job_id) for j in jobs]
    assert all(j.status == JobStatus.COMPLETED for j in done)
    # At no instant were more than two steps between their start and their end.
    edges = sorted([(s, 1) for s, _, _ in _intervals(*done)] +
                   [(f, -1) for _, f, _ in _intervals(*done)], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, d in edges:
        running += d
        peak = max(peak, running)
    assert peak <= 2, peak
    assert engine.running == 0


@pytest.mark.parametrize("how", ["cancel", "stop"])
async def test_no_slot_is_lost_when_a_job_ends_around_a_hand_over(harness: Harness,
                                                                   how: str) -> None:
    """Jobs of quick chains, each ended at a random moment (cancelled, or a parallel step
    failing under the stop policy): every step ends terminal, nothing is left RUNNING, and
    with one slot a job after them all still runs (a slot kept by a hand-over that never
    launched would leave it PENDING forever)."""
    _limited(harness, 1)
    rnd = random.Random(7)
    toml = _chain(30)
    if how == "stop":
        toml += '[steps.fails]\ntype = "shell"\ncommands = ["exit 3"]\ndepends = ["s2"]\n'
    for _ in range(8):
        job = await harness.submit(toml)
        if how == "cancel":
            k = rnd.randrange(1, 25)  # cancelled at a random point of the chain
            await harness.until(job.job_id, lambda j, k=k: sum(
                s.status == StepStatus.COMPLETED for s in j.steps) >= k)
            try:
                await harness.engine.cancel(job.job_id)
            except Exception as exc:  # it may have finished first
                assert type(exc).__name__ == "JobAlreadyFinished", exc
        ended = await harness.finish(job.job_id)
        assert ended.status.terminal
        assert not [s for s in ended.steps if not s.status.terminal], ended.steps
        if how == "stop":
            assert ended.status == JobStatus.FAILED
    last = await harness.submit(_chain(3))
    assert (await harness.finish(last.job_id)).status == JobStatus.COMPLETED
