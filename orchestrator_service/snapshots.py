"""The one cache of job snapshots: GetJob of a big job at the database's head without
rereading every step, and each WatchJob snapshot encoded once for all its watchers.

Reading and converting a 10,000-step job costs a few hundred milliseconds of
CPU; a client polling it would starve the engine. For big jobs, the last
answer is kept (a small LRU) and brought to the database's head by applying
the log's events since then, in place: the log is the only source, and
"snapshot + events == GetJob" is the invariant the property tests hold.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

from stepwatch.v1 import orchestrator_pb2 as pb

from . import codec
from .model import Event, JobState
from .store import Store

__all__ = ["JobSnapshots", "apply_in_place"]

ENCODED_KEPT = 64  # encoded WatchJob snapshots kept, by (job, head)
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
    job: pb.Job
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JobSnapshots:
    def __init__(self, store: Store, *, min_steps: int = 100, size: int = 32) -> None:
        self._store = store
        self._min_steps = min_steps
        self._size = size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._encoded: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def watch_snapshot(self, job: JobState) -> bytes:
        """A WatchJob snapshot response, encoded once per (job, head): many watchers opening
        at once share it."""
        key = (job.job_id, job.head_seq)
        found = self._encoded.get(key)
        if found is None:
            found = pb.WatchJobResponse(snapshot=pb.JobSnapshot(
                job=codec.job(job), seq=job.head_seq)).SerializeToString()
            self._encoded[key] = found
            while len(self._encoded) > ENCODED_KEPT:
                self._encoded.popitem(last=False)
        return found

    def forget(self, job_ids: list[str]) -> None:
        """Deleted jobs: drop what is cached of them."""
        for job_id in job_ids:
            self._entries.pop(job_id, None)

    async def get(self, job_id: str) -> pb.Job:
        """The job as GetJob answers it, at the head read now. Do not modify the result."""
        entry = self._entries.get(job_id)
        if entry is None:
            return await self._read(job_id)
        self._entries.move_to_end(job_id)
        async with entry.lock:
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
            return entry.job

    async def _read(self, job_id: str) -> pb.Job:
        state = await self._store.reads.get_job(job_id)
        # Converting thousands of steps is CPU work: off the event loop, which serves everyone.
        job = await asyncio.to_thread(codec.job, state) if len(state.steps) >= self._min_steps \
            else codec.job(state)
        if len(job.steps) >= self._min_steps:
            self._entries[job_id] = _Entry(job)
            self._entries.move_to_end(job_id)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return job
