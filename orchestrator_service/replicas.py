"""A replica's part in a shared PostgreSQL database: the lease loop and the notification listener.

The lease loop, every tenth of a lease: renew what this replica holds (a job
whose lease it lost is abandoned at once: runner and commands stopped, nothing
decided), carry out the cancels other replicas recorded, and claim unowned or
expired jobs (their steps interrupted by the rules, then run here). The
watchdog, on the clock alone: when a job's lease was extended neither by a renewal
nor by a committed write of it for most of a lease (the database down, or a
network that drops packets and leaves the renewal hanging), the replica abandons
the job before its lease can expire: by the time another replica may claim it,
nothing of it runs here any more. No new command starts on a lease older than
leases.START_MARGIN.

The listener: one connection doing ``LISTEN`` (psycopg 3's async notifies).
A notice from another replica is only ever "there is more": watchers read the
log, which stays the only source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError

from .broker import Broker
from .engine import Engine
from .model import Event
from .store import (
    NOTIFY_CHANNEL,
    JobNotFound,
    Leased,
    Store,
    StoreUnavailable,
    notices,
    pg_connect_args,
)
from .store.dialect import PostgreSQL

__all__ = ["Replicas"]

log = logging.getLogger(__name__)
CLAIM_BATCH = 20  # jobs claimed per sweep: replicas share a backlog instead of one taking all
SELF_FENCE = 0.6  # of a lease without a renewal: abandon everything before anyone may claim it
# Of a lease: how often leases are renewed and expired ones claimed. A dead replica's jobs are
# taken over within (1 + SWEEP) leases.
SWEEP = 0.1
MAX_BACKOFF_S = 2.0


class Replicas:
    def __init__(self, store: Store, leased: Leased, engine: Engine, broker: Broker, lease_s: float,
                 on_deleted: Callable[[list[str]], None], successor: bool = False,
                 on_takeover: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.leased = leased
        self.book = leased.book
        self.engine = engine
        self.broker = broker
        self.lease_s = lease_s
        self.on_deleted = on_deleted
        self.on_takeover = on_takeover
        #: This replica's name is the address it bound: an earlier process of that name is dead,
        #: and its jobs are taken over at once (a restart resumes them as on SQLite).
        self._successor = successor
        self._tasks: list[asyncio.Task[None]] = []
        self._headers: set[str] = set()
        self._adopting: set[asyncio.Task[None]] = set()
        self._header_task: asyncio.Task[None] | None = None
        #: Set while the listener is connected and listening (tests wait on it).
        self.listening = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen(), name="replica-listen"),
                       asyncio.create_task(self._lease_loop(), name="replica-leases"),
                       asyncio.create_task(self._watchdog(), name="replica-watchdog")]
        async with asyncio.timeout(30):  # a replica that cannot listen must not serve watchers
            await self.listening.wait()

    async def stop(self) -> None:
        """A clean stop gives the leases up: another replica takes the jobs over at once."""
        tasks = [*self._tasks, *self._adopting, *([self._header_task] if self._header_task else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def release(self) -> None:
        with contextlib.suppress(DBAPIError, OSError):
            await self.leased.release_leases()

    # -- leases ---------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sweep(started)
            except (DBAPIError, OSError) as exc:
                log.warning("lease renewal failed: %s", str(exc).splitlines()[0][:200])
            await asyncio.sleep(self.lease_s * SWEEP)  # the sweep's period

    async def _watchdog(self) -> None:
        """Leases are kept by the clock, not by a sweep's return: a renewal stuck on a silent
        network never fails, so this loop, on its own, abandons each job (runner and
        commands stopped) once neither a renewal nor a write of it committed for SELF_FENCE
        of a lease, before any other replica may claim it."""
        period = min(0.1, self.lease_s * 0.02)
        while True:
            await asyncio.sleep(period)  # a clock, not a wait for an event
            stale = self.book.stale(SELF_FENCE * self.lease_s)
            if stale:
                log.error("no lease renewal for %.1f s: abandoning %d job(s) before their "
                          "leases expire", min(stale.values()), len(stale))
            for job_id in stale:
                self.engine.abandon(job_id)

    async def sweep(self, started: float | None = None) -> None:
        started = time.monotonic() if started is None else started
        renewal = await self.leased.renew_leases()
        # Every lease renewed runs a lease past the moment the renewal began (at least).
        self.book.extended(renewal.renewed, started)
        for job_id in renewal.lost:
            self.engine.abandon(job_id)
        for job_id in renewal.ended:
            self.book.drop(job_id)
        for job_id in renewal.cancel_requested:
            self.engine.carry_out_cancel(job_id)
        predecessor, self._successor = self._successor, False
        for claimed in await self.leased.claim_jobs(CLAIM_BATCH if not predecessor else 10_000,
                                                   predecessor):
            log.warning("job %s: taken over (epoch %d)", claimed.job_id, claimed.epoch)
            if claimed.takeover:
                self.on_takeover()
            # Its own task: a decision that waits out a storage fault must not stop the loop
            # from renewing (or from giving everything up in time).
            task = asyncio.create_task(self.engine.adopt(claimed), name=f"adopt-{claimed.job_id}")
            self._adopting.add(task)
            task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[None]) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("taking a job over failed", exc_info=task.exception())

    # -- notifications --------------------------------------------------------

    async def _listen(self) -> None:
        import psycopg

        dialect = self.store.dialect
        assert isinstance(dialect, PostgreSQL)
        conninfo = dialect.listener_conninfo
        pause = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        conninfo, autocommit=True, **pg_connect_args(self.lease_s)) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    if self.listening.is_set():
                        self.broker.resync_all()  # what was said while we were away is lost
                    self.listening.set()
                    pause = 0.1
                    async for note in conn.notifies():
                        self.handle(note.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("notification listener: %s; reconnecting", exc)
            await asyncio.sleep(pause)  # backoff before reconnecting
            pause = min(MAX_BACKOFF_S, pause * 2)

    def handle(self, payload: str) -> None:
        for n in notices.decode(payload):
            if isinstance(n, notices.CancelAsked):
                self.engine.carry_out_cancel(n.job_id)
            elif n.owner == self.book.owner:
                continue  # our own commit: the broker has it already
            elif isinstance(n, notices.LogHead):
                self.broker.poke(n.job_id, n.head)
                if n.header and self.broker.feed_watched:
                    self._headers.add(n.job_id)
                    if self._header_task is None or self._header_task.done():
                        self._header_task = asyncio.create_task(self._read_headers())
            elif isinstance(n, notices.LogGrew):
                self.broker.publish_logs({(n.step_id, n.attempt)})
            elif isinstance(n, notices.Deleted):
                self.on_deleted(list(n.job_ids))

    async def _read_headers(self) -> None:
        """The feed (WatchJobs) carries headers: read the ones other replicas changed."""
        while self._headers:
            job_id = self._headers.pop()
            try:
                job = await self.store.reads.job_header(job_id)
            except JobNotFound:
                continue
            except StoreUnavailable:  # the feed re-reads the job list rather than miss one
                self._headers.clear()
                self.broker.resync_all()
                return
            self.broker.publish_feed(Event(job_id, job.head_seq, time.time_ns() // 1000, job=job))
