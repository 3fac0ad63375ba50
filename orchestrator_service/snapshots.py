"""The one cache of job snapshots: GetJob without a database read, and each WatchJob
snapshot encoded once for all its watchers.

Reading and converting a 10,000-step job costs a few hundred milliseconds of CPU, and
even a small job's read waits behind a busy engine for the reader thread. So the last
answer for a job is kept (an LRU) and brought up to date with the events this process
committed since, as the broker hands them over after each commit (kept, applied in place
at the next GetJob): an answer is always a state that was committed, and never older than
what the caller's own earlier command committed. Where another process writes too
(replicas), or an event was missed, the log is read instead: the log is the only source,
and "snapshot + events == GetJob" is the invariant the property tests hold.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

from stepwatch.v1 import orchestrator_pb2 as pb

from . import codec
from .broker import Broker
from .model import Event
from .statuses import JobStatus
from .store import Store
from .watch import EncodedSnapshot

__all__ = ["JobSnapshots", "apply_in_place"]

ENCODED_KEPT = 64  # encoded WatchJob snapshots kept, by (job, head)
PENDING_KEPT = 256  # committed events kept for a cached job between two GetJobs; past: reread
STEPS_KEPT = 100_000  # steps in cache at most (over all jobs)
_HEADER_FIELDS = [f.name for f in pb.Job.DESCRIPTOR.fields if f.name != "steps"]


def apply_in_place(job: pb.Job, event: Event) -> None:
    """Put an event's change into ``job`` (O(1) for a step, whatever the number of steps)."""
    if event.step is not None:
        step = codec.step(event.step)
        if step.index < len(job.steps):
            job.steps[step.index].CopyFrom(step)
        else:  # the job's creation events bring its steps in index order
            job.steps.append(step)
    elif event.job is not None:
        for name in _HEADER_FIELDS:
            job.ClearField(name)
        job.MergeFrom(codec.job(event.job))  # a header event carries no steps
    job.head_seq = event.seq


@dataclass
class _Entry:
    #: Settled when the first read ends: who asks meanwhile waits for it (one read, not one
    #: each, when a thousand watchers open at once).
    loaded: asyncio.Future[None]
    job: pb.Job | None = None  # None while its first read is under way
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Events committed by this process since, in commit order, not applied yet.
    pending: list[Event] = field(default_factory=list)
    #: Events may have been missed (too many pending): the log is read at the next GetJob.
    stale: bool = False


class JobSnapshots:
    def __init__(self, store: Store, broker: Broker, *, min_steps: int = 100,
                 size: int = 256) -> None:
        self._store = store
        broker.taps.append(self.committed)
        self._min_steps = min_steps  # a job this big is converted off the event loop
        self._size = size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._encoded: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    async def watch_snapshot(self, job_id: str) -> EncodedSnapshot:
        """A WatchJob snapshot from the cache (no read of the store unless GetJob would
        read), encoded once per (job, head): many watchers opening at once share it."""
        job = await self.get(job_id)
        key = (job_id, job.head_seq)
        found = self._encoded.get(key)
        if found is None:
            found = pb.WatchJobResponse(snapshot=pb.JobSnapshot(
                job=job, seq=job.head_seq)).SerializeToString()
            self._encoded[key] = found
            while len(self._encoded) > ENCODED_KEPT:
                self._encoded.popitem(last=False)
        return EncodedSnapshot(job.head_seq, JobStatus(job.status), found)

    def holds(self, job_id: str) -> bool:
        """Whether ``job_id`` is a job's whole id that is cached (so it needs no lookup; a job
        deleted since is forgotten here, or, deleted by another replica, not found by the
        read of its head that ``get`` makes then)."""
        entry = self._entries.get(job_id)
        return entry is not None and entry.job is not None

    def forget(self, job_ids: list[str]) -> None:
        """Deleted jobs: drop what is cached of them."""
        for job_id in job_ids:
            self._entries.pop(job_id, None)

    def committed(self, events: list[Event]) -> None:
        """The broker's tap, on the loop after each commit: kept for the next GetJob."""
        for ev in events:
            entry = self._entries.get(ev.job_id)
            if entry is None or entry.stale:
                continue
            if len(entry.pending) >= PENDING_KEPT:
                entry.pending.clear()
                entry.stale = True
            else:
                entry.pending.append(ev)

    async def get(self, job_id: str) -> pb.Job:
        """The job as GetJob answers it: at least at the head this process committed.
        Do not modify the result."""
        entry = self._entries.get(job_id)
        if entry is not None and entry.job is None:
            await asyncio.shield(entry.loaded)  # settled whether the read worked or not
            entry = self._entries.get(job_id)
        if entry is None or entry.job is None:
            return await self._read(job_id)
        self._entries.move_to_end(job_id)
        async with entry.lock:
            if not entry.stale and not self._store.holding.others_write:
                if _catch_up(entry.job, entry):
                    return entry.job
            entry.stale = False  # from here on the tap keeps what is committed
            head = await self._store.reads.head(job_id)
            behind = head - entry.job.head_seq
            if behind > max(1000, len(entry.job.steps)):
                return await self._read(job_id)  # cheaper to read it whole
            while entry.job.head_seq < head:
                events = await self._store.reads.events_after(job_id, entry.job.head_seq, 1000)
                if not events:
                    break
                for ev in events:
                    apply_in_place(entry.job, ev)
            _catch_up(entry.job, entry)  # what committed meanwhile
            return entry.job

    async def _read(self, job_id: str) -> pb.Job:
        # In place before the read: the tap keeps what commits meanwhile.
        loaded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = _Entry(loaded=loaded)
        self._entries[job_id] = entry
        self._entries.move_to_end(job_id)
        try:
            try:
                state = await self._store.reads.get_job(job_id)
                # Converting thousands of steps is CPU work: off the event loop, which serves
                # everyone.
                job = await asyncio.to_thread(codec.job, state) \
                    if len(state.steps) >= self._min_steps else codec.job(state)
            except BaseException:
                if self._entries.get(job_id) is entry:
                    del self._entries[job_id]
                raise
            if self._entries.get(job_id) is entry:
                entry.job = job
                _catch_up(job, entry)
                self._evict()
            return job
        finally:
            loaded.set_result(None)  # those waiting find the entry filled (or gone)

    def _evict(self) -> None:
        steps = sum(len(e.job.steps) for e in self._entries.values() if e.job is not None)
        while len(self._entries) > self._size or (steps > STEPS_KEPT and len(self._entries) > 1):
            _, old = self._entries.popitem(last=False)
            steps -= len(old.job.steps) if old.job is not None else 0


def _catch_up(job: pb.Job, entry: _Entry) -> bool:
    """Apply the entry's pending events to ``job``; False if one is missing (a gap)."""
    pending, entry.pending = entry.pending, []
    for ev in pending:
        if ev.seq <= job.head_seq:
            continue  # already in (read from the log)
        if ev.seq != job.head_seq + 1:
            entry.stale = True
            return False
        apply_in_place(job, ev)
    return True
