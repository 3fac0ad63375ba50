"""GetJob of a big job from a kept snapshot brought to the head by the log equals a fresh read."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator_service import codec
from orchestrator_service.snapshots import JobSnapshots, apply_in_place
from stepwatch.v1 import orchestrator_pb2 as pb

from .conftest import Harness


def flat(n: int, extra: str = "") -> str:
    return 'name = "big"\n[policy]\non_step_failure = "continue"\n' + "".join(
        f'[steps.s{i}]\ntype = "shell"\ncommands = ["{"exit 1" if i % 7 == 3 else "true"}"]\n'
        + (f'depends = ["s{i - 1}"]\n' if i % 5 == 4 else "") + extra for i in range(n))


async def test_the_whole_log_applied_in_place_is_the_job(harness: Harness) -> None:
    j = await harness.submit(flat(30))
    done = await harness.finish(j.job_id)
    rebuilt = pb.Job()
    for ev in await harness.events(j.job_id):
        apply_in_place(rebuilt, ev)
    assert rebuilt == codec.job(done)


async def test_a_kept_snapshot_follows_the_head_while_the_job_runs(harness: Harness) -> None:
    """On SQLite from the events this process committed (the broker's tap), on PostgreSQL
    (replicas: others write too) from the log."""
    snapshots = JobSnapshots(harness.store, harness.broker, min_steps=10, size=4)
    j = await harness.submit(flat(120))
    answers = []
    while not answers or answers[-1].status not in (pb.JOB_STATUS_COMPLETED,
                                                    pb.JOB_STATUS_COMPLETED_WITH_FAILURES):
        got = pb.Job()
        got.CopyFrom(await snapshots.get(j.job_id))
        answers.append(got)
        # A fresh read at the same head must be identical; heads only move forward.
        fresh = await harness.store.reads.get_job(j.job_id)
        if fresh.head_seq == got.head_seq:
            assert codec.job(fresh) == got
        await asyncio.sleep(0.01)  # a polling client's pace
    heads = [a.head_seq for a in answers]
    assert heads == sorted(heads) and len(set(heads)) > 2  # it really followed a moving head
    assert answers[-1] == codec.job(await harness.store.reads.get_job(j.job_id))


async def test_answers_from_the_tap_equal_fresh_reads_of_many_jobs(harness: Harness) -> None:
    """More jobs than the cache keeps, polled round-robin while they run: every answer equals
    a fresh read at its head, and heads never go back."""
    snapshots = JobSnapshots(harness.store, harness.broker, size=3)
    jobs = [(await harness.submit(flat(15))).job_id for _ in range(5)]
    last: dict[str, int] = {}
    done: set[str] = set()
    async with asyncio.timeout(60):
        while len(done) < len(jobs):
            for job_id in jobs:
                got = pb.Job()
                got.CopyFrom(await snapshots.get(job_id))
                assert got.head_seq >= last.get(job_id, 0)
                last[job_id] = got.head_seq
                fresh = await harness.store.reads.get_job(job_id)
                if fresh.head_seq == got.head_seq:
                    assert codec.job(fresh) == got
                if fresh.status.terminal and got.head_seq == fresh.head_seq:
                    done.add(job_id)
            await asyncio.sleep(0.005)  # a polling client's pace


async def test_many_callers_of_an_uncached_job_share_one_read(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A thousand watchers opening at once: one read of the store, every answer the job."""
    j = await harness.submit(flat(12))
    done = await harness.finish(j.job_id)
    snapshots = JobSnapshots(harness.store, harness.broker)
    reads = harness.store.reads
    real = reads.get_job
    calls = []

    async def counted(job_id: str):  # type: ignore[no-untyped-def]
        calls.append(job_id)
        return await real(job_id)

    monkeypatch.setattr(reads, "get_job", counted)
    answers = await asyncio.gather(*(snapshots.watch_snapshot(j.job_id) for _ in range(200)))
    assert calls == [j.job_id]
    expected = pb.WatchJobResponse(snapshot=pb.JobSnapshot(job=codec.job(done),
                                                           seq=done.head_seq))
    assert {a.response for a in answers} == {expected.SerializeToString()}
    assert {(a.head_seq, a.status) for a in answers} == {(done.head_seq, done.status)}


async def test_a_failed_first_read_is_every_waiters_error_and_the_next_one_reads_again(
        harness: Harness) -> None:
    snapshots = JobSnapshots(harness.store, harness.broker)
    results = await asyncio.gather(*(snapshots.get("no-such-job") for _ in range(5)),
                                   return_exceptions=True)
    assert all(type(r).__name__ == "JobNotFound" for r in results), results
    j = await harness.submit(flat(3))
    assert (await snapshots.get(j.job_id)).job_id == j.job_id


async def test_only_a_cached_whole_id_skips_the_lookup(harness: Harness) -> None:
    """``holds``: the servicer's lookup of a job id is skipped only for an exact id in the
    cache, never for a prefix, an unknown id, a read under way or a forgotten job."""
    snapshots = JobSnapshots(harness.store, harness.broker)
    j = await harness.submit(flat(2))
    assert not snapshots.holds(j.job_id)
    reading = asyncio.ensure_future(snapshots.get(j.job_id))
    await asyncio.sleep(0)  # the read is under way: nothing to answer from yet
    assert not snapshots.holds(j.job_id)
    await reading
    assert snapshots.holds(j.job_id)
    assert not snapshots.holds(j.job_id[:8]) and not snapshots.holds("0" * 32)
    snapshots.forget([j.job_id])
    assert not snapshots.holds(j.job_id)
