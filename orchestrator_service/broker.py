"""Fan-out of committed events to watchers, through bounded per-watcher buffers.

A watcher that falls behind by more than its buffer is not allowed to hold
memory: its buffer is dropped and it is told it overflowed, so it re-reads
what it missed from the durable log (see watch.py). Nothing is lost; the log
is the source, the broker only says "there is more".
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .model import Event
from .problems import Code, ServerError

DEFAULT_BUFFER = 1024

_EARLY_S = 0.001  # a timer may run this much before its time: silence all the same


class Overflowed(Exception):
    """The watcher fell behind; re-read from the log."""


class BrokerClosed(ServerError):
    """The server is shutting down."""

    code = Code.UNAVAILABLE

    def public_message(self) -> str:
        return "server is shutting down; resume with after_seq = the last seq received"


@dataclass(frozen=True)
class Deleted:
    """In the jobs feed: this job was deleted."""

    job_id: str


@dataclass(frozen=True)
class More:
    """Another replica committed this job's events up to ``seq``: read them from the log."""

    seq: int


Item = Event | Deleted | More


class Subscription:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: deque[Item] = deque()
        # The waiting watcher's future (not an asyncio.Event under wait_for: that costs a task
        # per wake-up, and a watcher wakes for every event).
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        self._closed = False
        # The silence timer: armed once and moved on only when it fires, not made and
        # cancelled at every wake-up (a watcher wakes for every event).
        self._timer: asyncio.TimerHandle | None = None
        self._silent_at = 0.0  # when the current wait turns into silence (loop time)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def push(self, event: Item) -> None:
        if len(self._items) >= self._limit:
            self._items.clear()
            self._overflowed = True
        else:
            self._items.append(event)
        self._wake()

    def resync(self) -> None:
        """What was published may be incomplete (notifications lost): re-read the log."""
        self._items.clear()
        self._overflowed = True
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def take_events(self, limit: int) -> list[Event]:
        """Without waiting: the events already queued (up to ``limit``), stopping at anything
        that is not one (a watcher behind the loop sends them as one page)."""
        out: list[Event] = []
        items = self._items
        while items and len(out) < limit:
            head = items[0]
            if not isinstance(head, Event):
                break
            out.append(head)
            items.popleft()
        return out

    def _silence(self) -> None:
        """The timer fired: a wait that began long enough ago ends in silence; a later one
        (begun after the timer was armed) has it armed again for its own end."""
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return  # not waiting: the next wait arms it
        loop = asyncio.get_running_loop()
        if loop.time() >= self._silent_at - _EARLY_S:
            self._waiter.set_result(None)
        else:
            self._timer = loop.call_at(self._silent_at, self._silence)

    def dispose(self) -> None:
        """Unsubscribed: its timer goes (it would hold the subscription until it fired)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def next(self, timeout: float) -> Item | None:
        """The next event; None after ``timeout`` seconds of silence."""
        if not self._items and not self._overflowed and not self._closed:
            loop = asyncio.get_running_loop()
            self._silent_at = loop.time() + timeout
            if self._timer is None or self._timer.when() > self._silent_at:
                if self._timer is not None:
                    self._timer.cancel()  # armed for a longer silence than this wait's
                self._timer = loop.call_at(self._silent_at, self._silence)
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
            if not self._items and not self._overflowed and not self._closed:
                return None  # silence: the caller sends a heartbeat
        if self._closed:
            raise BrokerClosed
        if self._overflowed:
            self._overflowed = False
            raise Overflowed
        return self._items.popleft()


class Broker:
    def __init__(self, buffer: int = DEFAULT_BUFFER) -> None:
        self._buffer = buffer
        self._by_job: dict[str, set[Subscription]] = {}
        self._feed: set[Subscription] = set()
        self._logs: dict[tuple[str, int], set[asyncio.Event]] = {}
        self._closed = False
        #: Told every committed event of this process, before any watcher (the snapshot cache).
        self.taps: list[Callable[[list[Event]], None]] = []

    def publish(self, events: list[Event]) -> None:
        for tap in self.taps:
            tap(events)
        for ev in events:
            for sub in self._by_job.get(ev.job_id, ()):
                sub.push(ev)
            if ev.job is not None:
                for sub in self._feed:
                    sub.push(ev)

    def poke(self, job_id: str, seq: int) -> None:
        """Another replica committed the job's log up to ``seq`` (a notification)."""
        for sub in self._by_job.get(job_id, ()):
            sub.push(More(seq))

    def publish_feed(self, event: Event) -> None:
        """A job header another replica committed, read back from the store: to the feed."""
        for sub in self._feed:
            sub.push(event)

    @property
    def feed_watched(self) -> bool:
        return bool(self._feed)

    def resync_all(self) -> None:
        """Notifications may have been missed (the listener reconnected): everyone re-reads."""
        for sub in [*self._feed, *(s for g in self._by_job.values() for s in g)]:
            sub.resync()
        self.publish_logs(set(self._logs))

    def publish_deleted(self, job_ids: list[str]) -> None:
        """Jobs deleted (DeleteJob, retention): the feed's watchers are told."""
        for job_id in job_ids:
            for sub in self._feed:
                sub.push(Deleted(job_id))

    @contextmanager
    def subscribe(self, job_id: str | None) -> Iterator[Subscription]:
        """Events of one job, or (job_id None) every job's header events."""
        sub = Subscription(self._buffer)
        if self._closed:
            sub.close()
        group = self._feed if job_id is None else self._by_job.setdefault(job_id, set())
        group.add(sub)
        try:
            yield sub
        finally:
            sub.dispose()
            group.discard(sub)
            if job_id is not None and not group:
                self._by_job.pop(job_id, None)

    def publish_logs(self, keys: set[tuple[str, int]]) -> None:
        """A step attempt's log grew, or the attempt ended: its followers read the store."""
        for key in keys:
            for poke in self._logs.get(key, ()):
                poke.set()

    @contextmanager
    def subscribe_logs(self, step_id: str, attempt: int) -> Iterator[asyncio.Event]:
        """An event set whenever the attempt's log may have more (or the server closes)."""
        key = (step_id, attempt)
        poke = asyncio.Event()
        if self._closed:
            poke.set()
        group = self._logs.setdefault(key, set())
        group.add(poke)
        try:
            yield poke
        finally:
            group.discard(poke)
            if not group:
                self._logs.pop(key, None)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        for sub in [*self._feed, *(s for g in self._by_job.values() for s in g)]:
            sub.close()
        for group in self._logs.values():
            for poke in group:
                poke.set()
