"""Following a job's log: snapshot or backlog first, then live events.

Subscribe first, then read the log, then take live events, skipping any seq
already sent: so there is no gap (anything committed before the subscription
is in the log) and no duplicate. A gap or an overflow sends the reader back
to the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from .broker import Broker, BrokerClosed, Deleted, More, Overflowed
from .codec import Framed
from .eventcache import EventCache
from .model import Event, JobState
from .problems import Code, ServerError
from .statuses import JobStatus
from .store import LogChunk, Store

PAGE = 500


class AfterSeqOutOfRange(ServerError):
    code = Code.OUT_OF_RANGE

    def __init__(self, after_seq: int, head_seq: int) -> None:
        super().__init__(f"after_seq {after_seq} is past the job's head seq {head_seq}")
        self.after_seq = after_seq
        self.head_seq = head_seq


@dataclass(frozen=True)
class Snapshot:
    job: JobState


@dataclass(frozen=True)
class EncodedSnapshot:
    """A snapshot as the response bytes a sender writes as they are (the snapshot cache's)."""

    head_seq: int
    status: JobStatus
    response: bytes


#: Where a stream's snapshot comes from instead of a read of the store: the job at least at
#: the head this process has published (the cache the broker keeps up to date).
SnapshotOf = Callable[[str], Awaitable[EncodedSnapshot]]


@dataclass(frozen=True)
class Heartbeat:
    head_seq: int
    at_us: int


@dataclass(frozen=True)
class JobsSnapshot:
    jobs: list[JobState]


async def follow_job(store: Store, broker: Broker, job_id: str, after_seq: int,
                     heartbeat_s: float, decoded: bool = True,
                     ) -> AsyncIterator[Snapshot | Event | Heartbeat]:
    """Every item of ``follow_job_pages``, one at a time."""
    async for page in follow_job_pages(store, broker, job_id, after_seq, heartbeat_s, decoded):
        for item in page:
            assert not isinstance(item, EncodedSnapshot)  # no snapshot_of here
            assert not isinstance(item, Framed) or not decoded
            yield item  # type: ignore[misc]


async def follow_job_pages(store: Store, broker: Broker, job_id: str, after_seq: int,
                           heartbeat_s: float, decoded: bool = True,
                           snapshot_of: SnapshotOf | None = None,
                           cache: EventCache | None = None,
                           ) -> AsyncIterator[Sequence[Snapshot | EncodedSnapshot | Event | Framed
                                                       | Heartbeat]]:
    """The job's stream in pages: a replay hands a page of the log over at once (a sender
    writes it without a generator step per event); a live event is a page of one.
    ``decoded=False``: events from the log come as the bytes a sender writes (codec.Framed);
    ``snapshot_of``: the snapshot comes from there, encoded, not from a read of the store;
    ``cache``: pages of the log from there when it holds them (with ``decoded=False``)."""
    if decoded:
        cache = None  # it holds framed pages
    with broker.subscribe(job_id) as sub:
        # Raises JobNotFound. A snapshot reads the whole job (or takes the cache's, which
        # holds every event published before this subscription); a resume reads the head
        # and the first page of the backlog in the same transaction.
        backlog: list[Event | Framed] = []
        if after_seq == 0 and snapshot_of is not None:
            encoded = await snapshot_of(job_id)
            head, status = encoded.head_seq, encoded.status
            yield [encoded]
        elif after_seq == 0:
            job = await store.reads.get_job(job_id)
            head, status = job.head_seq, job.status
            yield [Snapshot(job)]
        else:
            held = cache.page(job_id, after_seq, PAGE) if cache is not None else None
            # The head and status are read either way (and a deleted job is not found).
            head, status, backlog = await store.reads.resume(
                job_id, after_seq, PAGE if held is None else 0, decoded)
            if held is not None:
                backlog = held
            elif cache is not None:
                cache.put(job_id, after_seq, backlog)
            if after_seq > head:
                raise AfterSeqOutOfRange(after_seq, head)
        last = after_seq or head
        if status.terminal and last == head:
            return
        need_log = last < head  # with after_seq > 0 this is when the backlog holds a page
        while True:
            if need_log:
                need_log = False
                while True:
                    batch = backlog or await _page_after(store, job_id, last, decoded, cache)
                    backlog = []  # the page read with the head serves once
                    page: list[Snapshot | EncodedSnapshot | Event | Framed | Heartbeat] = []
                    for ev in batch:
                        page.append(ev)
                        if ev.ends_job:
                            break
                    if page:
                        yield page
                        last = batch[len(page) - 1].seq
                        if batch[len(page) - 1].ends_job:
                            return
                    if len(batch) < PAGE:
                        break
            try:
                got = await sub.next(heartbeat_s)
            except Overflowed:
                need_log = True
                continue
            if got is None:
                if store.holding.others_write:
                    # Replicas: the database's head, so a lost notification costs one heartbeat.
                    head = await store.reads.head(job_id)
                    if head > last:
                        need_log = True
                        continue
                yield [Heartbeat(last, time.time_ns() // 1000)]
            elif isinstance(got, Deleted):
                continue  # only the jobs feed carries these
            elif isinstance(got, More):  # another replica wrote: the log is the source
                need_log = got.seq > last
            elif got.seq > last + 1:
                need_log = True
            elif got.seq == last + 1:
                # What else came meanwhile goes with it: a watcher that fell behind the loop
                # catches up a page at a time, not an event per wake-up.
                live = [got]
                for ev in sub.take_events(PAGE):
                    if ev.seq <= live[-1].seq:
                        continue  # already sent (read from the log meanwhile)
                    if ev.seq != live[-1].seq + 1 or live[-1].ends_job:
                        need_log = True  # a gap: the log fills it
                        break
                    live.append(ev)
                yield live
                last = live[-1].seq
                if live[-1].ends_job:
                    return


async def _page_after(store: Store, job_id: str, last: int, decoded: bool,
                      cache: EventCache | None) -> list[Event | Framed]:
    if decoded:
        return [*await store.reads.events_after(job_id, last, PAGE)]
    held = cache.page(job_id, last, PAGE) if cache is not None else None
    if held is not None:
        return held
    page = await store.reads.framed_after(job_id, last, PAGE)
    if cache is not None:
        cache.put(job_id, last, page)
    return page


async def follow_jobs(store: Store, broker: Broker, limit: int, heartbeat_s: float,
                      ) -> AsyncIterator[JobsSnapshot | JobState | Heartbeat | Deleted]:
    """Every job's header: the newest ``limit`` first, then each change."""
    with broker.subscribe(None) as sub:
        jobs, _ = await store.reads.list_jobs(limit)
        yield JobsSnapshot(jobs)
        while True:
            try:
                ev = await sub.next(heartbeat_s)
            except Overflowed:
                jobs, _ = await store.reads.list_jobs(limit)
                yield JobsSnapshot(jobs)
                continue
            if ev is None:
                yield Heartbeat(0, time.time_ns() // 1000)
            elif isinstance(ev, Deleted):
                yield ev
            elif isinstance(ev, Event) and ev.job is not None:
                yield ev.job


class LogOutOfRange(ServerError):
    """after_offset past the head, or before what retention kept ("log compacted")."""

    code = Code.OUT_OF_RANGE


async def follow_logs(store: Store, broker: Broker, step_id: str, attempt: int, child: int | None,
                      after: int, heartbeat_s: float) -> AsyncIterator[LogChunk | Heartbeat]:
    """An attempt's log after ``after``: stored chunks, then live ones; ends once it ended.

    The attempt's end commits with its last chunks, so a read that sees the end
    holds every chunk: nothing is missed, and nothing is sent twice (offsets grow).
    """
    if after >= 2**62:  # past any head a log can have (and past what SQL integers hold)
        raise LogOutOfRange(f"after_offset {after} is past the log's head")
    with broker.subscribe_logs(step_id, attempt) as poke:
        page = await store.reads.read_logs(step_id, attempt, after, PAGE, child)
        if after > page.head:
            raise LogOutOfRange(f"after_offset {after} is past the log's head offset {page.head}")
        if after + 1 < page.first_kept:
            raise LogOutOfRange(f"log compacted: offsets before {page.first_kept} were deleted "
                                f"by retention; resume from {page.first_kept - 1} or later")
        last = after
        while True:
            for chunk in page.chunks:
                yield chunk
                last = chunk.offset
            if len(page.chunks) < PAGE:
                if page.ended:
                    return
                try:
                    await asyncio.wait_for(poke.wait(), heartbeat_s)
                except TimeoutError:
                    yield Heartbeat(page.head, time.time_ns() // 1000)
                if broker.closed:
                    raise BrokerClosed
                poke.clear()
            page = await store.reads.read_logs(step_id, attempt, last, PAGE, child)
