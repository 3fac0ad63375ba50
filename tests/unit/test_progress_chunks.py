"""The progress recorder writes a backlog in bounded transactions, and loses nothing.

Whatever the children do and whichever writes fail, every write carries at most CHUNK
changes (the attempt's end included, unless a write failed) and the counts as they stand
once it commits after the writes before it; each document goes exactly once; and the
writes plus the attempt's end leave the children and counts the recorder saw.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_service import progress
from orchestrator_service.model import ChildCounts
from orchestrator_service.progress import ProgressRecorder
from orchestrator_service.statuses import ChildStatus
from orchestrator_service.step_types.base import DocumentPut
from orchestrator_service.store import ProgressBatch

CHUNK = 3
FIELD = {ChildStatus.PENDING: "pending", ChildStatus.RUNNING: "running",
         ChildStatus.COMPLETED: "completed", ChildStatus.FAILED: "failed",
         ChildStatus.CANCELLED: "cancelled"}


@dataclass
class Database:
    """What the writes committed: each child's status, and the documents."""

    total: int
    fail: set[int]
    status: dict[int, ChildStatus] = field(default_factory=dict)
    docs: list[str] = field(default_factory=list)
    writes: int = 0
    sizes: list[int] = field(default_factory=list)
    #: What a write got wrong (kept, not raised: the recorder takes a raise as a failed write).
    wrong: list[str] = field(default_factory=list)

    def counts(self) -> ChildCounts:
        n = dict.fromkeys(FIELD.values(), 0)
        for i in range(self.total):
            n[FIELD[self.status.get(i, ChildStatus.PENDING)]] += 1
        return ChildCounts(total=self.total, **n)

    def commit(self, batch: ProgressBatch) -> None:
        for ch in batch.children:
            self.status[ch.child] = ch.status
        if batch.document_delta != len(batch.documents):
            self.wrong.append(f"{batch.document_delta} documents said, {len(batch.documents)} sent")
        self.docs += [d.path for d in batch.documents]
        if batch.counts != self.counts():
            self.wrong.append(f"counts {batch.counts} written with children at {self.counts()}")

    async def write(self, batch: ProgressBatch) -> None:
        self.writes += 1
        if self.writes in self.fail:
            raise RuntimeError("the database said no")  # nothing of it committed
        self.sizes.append(len(batch.children))
        self.commit(batch)
        await asyncio.sleep(0)  # a write takes a turn of the loop, at least


# A child moves once or twice: started, then ended (with 0-2 documents), or ended at once.
moves = st.lists(st.tuples(st.sampled_from(["run", "complete", "fail"]),
                           st.integers(0, 2), st.booleans()), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(moves=moves, fail=st.sets(st.integers(1, 12), max_size=2))
def test_every_change_and_document_is_written_once_in_bounded_writes(
        moves: list[tuple[str, int, bool]], fail: set[int]) -> None:
    asyncio.run(_run(moves, fail))


async def _run(moves: list[tuple[str, int, bool]], fail: set[int]) -> None:
    db = Database(total=len(moves), fail=fail)
    mp = pytest.MonkeyPatch()
    mp.setattr(progress, "CHUNK", CHUNK)
    try:
        rec = ProgressRecorder(db.write, "s", 1, len(moves), interval=0.0)
        rec.start()
        puts = []
        for i, (move, ndocs, pause) in enumerate(moves):
            if move == "run":
                rec.running(i)
                if pause:
                    await asyncio.sleep(0)  # the flush loop may take it now
                move = "complete" if ndocs else "fail"
            if move == "complete":
                docs = [DocumentPut(f"d{i}.{k}") for k in range(ndocs)]
                puts += [d.path for d in docs]
                rec.completed(i, docs)
            else:
                rec.failed(i, "boom")
            if pause:
                await asyncio.sleep(0)
        end = await rec.finish()
    finally:
        mp.undo()
    failed = any(w in fail for w in range(1, db.writes + 1))
    assert all(n <= CHUNK for n in db.sizes), db.sizes
    if not failed:
        assert len(end.children) <= CHUNK, len(end.children)
    db.commit(end)  # the attempt's end
    assert db.wrong == []
    assert db.counts() == rec.counts
    assert sorted(db.docs) == sorted(puts)
    assert {i: db.status.get(i) for i in range(len(moves))} == {
        i: (ChildStatus.FAILED if m == "fail" or (m == "run" and not n) else ChildStatus.COMPLETED)
        for i, (m, n, _) in enumerate(moves)}


async def _ends_within_its_interval() -> tuple[Database, ProgressBatch, list[str]]:
    db = Database(total=2, fail=set())
    rec = ProgressRecorder(db.write, "quick", 1, 2, interval=60.0)
    rec.start()
    rec.running(0)
    rec.completed(0, [DocumentPut("a")])
    rec.failed(1, "boom")
    await asyncio.sleep(0)
    tasks = [t.get_name() for t in asyncio.all_tasks()]
    return db, await rec.finish(), tasks


def test_a_step_that_ends_within_its_interval_is_one_write_and_no_flush_task() -> None:
    db, end, tasks = asyncio.run(_ends_within_its_interval())
    assert db.writes == 0  # nothing before the attempt's end
    assert not [t for t in tasks if t.startswith("progress-")], tasks
    db.commit(end)
    assert db.wrong == []
    assert db.status == {0: ChildStatus.COMPLETED, 1: ChildStatus.FAILED}
    assert db.docs == ["a"]


async def _runs_for_several_intervals() -> tuple[list[ChildCounts], ProgressBatch]:
    seen: list[ChildCounts] = []
    wrote = asyncio.Event()

    async def write(batch: ProgressBatch) -> None:
        seen.append(batch.counts)
        wrote.set()

    rec = ProgressRecorder(write, "long", 1, 3, interval=0.01)
    rec.start()
    for i in range(3):
        rec.running(i)
        wrote.clear()
        await asyncio.wait_for(wrote.wait(), 10)  # the next interval's flush carries it
        rec.completed(i, ())
    return seen, await rec.finish()


def test_a_long_step_writes_its_progress_each_interval_until_its_end() -> None:
    seen, end = asyncio.run(_runs_for_several_intervals())
    assert [c.running for c in seen] == [1, 1, 1]
    assert [c.completed for c in seen] == [0, 1, 2]
    assert end.counts.completed == 3 and end.counts.running == 0
