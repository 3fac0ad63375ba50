"""Where the store's transactions run: threads, retries, receipts, and what commits tell.

Writes run on one thread for SQLite (a single writer) and on several for PostgreSQL,
keyed by job (decisions, with every header event) or by step (children and logs), each
key's writes on one thread and so in commit order; a watcher that receives a job's events
out of order reads them from the log. They are shielded from the caller's cancellation:
a write once asked for is never dropped. Reads run on their own threads (one snapshot
each) so a busy writer does not hold them up; lease operations on a thread of their own,
so a busy or retrying writer never delays a renewal.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..futures import settle
from ..model import Event
from .dialect import Dialect
from .errors import (
    Receipt,
    StoreUnavailable,
    _Committed,
    _storage_fault,
    _StorageFault,
    storage_reason,
)
from .health import Health
from .rows import _RECEIPT, _read_events
from .values import Recover, new_id

__all__ = ["Listeners", "Runner"]

log = logging.getLogger(__name__)

T = TypeVar("T")

FAST_TRIES = 3  # a command's write (SubmitJob, CancelJob) tries this often, then answers UNAVAILABLE
MAX_BACKOFF_S = 2.0  # a running job's write retries at least this often while storage is down


@dataclass
class Listeners:
    """Told on the event loop, after each commit, in commit order."""

    #: the committed events (the broker)
    events: Callable[[list[Event]], None] | None = None
    #: which (step_id, attempt) logs grew or ended
    logs: Callable[[set[tuple[str, int]]], None] | None = None
    #: which jobs were deleted (called on the loop, directly)
    deleted: Callable[[list[str]], None] | None = None
    #: how long each write transaction took (metrics; called on the writer thread)
    write_timer: Callable[[str, float], None] | None = None
    #: called on the writer thread before each write, with its name (tests delay it)
    before_write: Callable[[str], None] | None = None


class Runner:
    def __init__(self, dialect: Dialect, health: Health, listeners: Listeners) -> None:
        self._dialect = dialect
        self._health = health
        self.listeners = listeners
        self._writers = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"store-write{i}")
                         for i in range(dialect.writers)]
        n = dialect.readers
        self._reader = (ThreadPoolExecutor(max_workers=n, thread_name_prefix="store-read") if n
                        else self._writers[0])
        self._lease_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-lease")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls = threading.local()  # the write id of the transaction on this writer thread

    def close(self) -> None:
        self._health.closed.set()
        for w in self._writers:
            w.shutdown(wait=True)
        self._lease_thread.shutdown(wait=True)
        if self._reader is not self._writers[0]:
            self._reader.shutdown(wait=True)

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = self._health.loop = asyncio.get_running_loop()
        return self._loop

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in one read transaction (one snapshot)."""
        try:
            return await self._bind().run_in_executor(self._reader, self._read, fn, args)
        except DBAPIError as exc:
            if not _storage_fault(exc):
                raise
            raise StoreUnavailable(storage_reason(exc)) from exc

    def _read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._dialect.reading.begin() as c:
            return fn(c, *args)

    def writer_of(self, key: str) -> int:
        """The writer thread (its number) that commits ``key``'s writes, in order."""
        return hash(key) % len(self._writers)

    async def write(self, name: str, fn: Callable[..., T], *args: Any, wait: bool = True,
                    key: str = "", recover: Recover | None = None) -> T:
        """Run a write transaction on its writer thread; retry while storage is faulty.

        ``wait``: a running job's write waits out a storage fault (retrying with
        backoff, however long it lasts); a command's write (wait=False) tries at
        least once, and answers StoreUnavailable after a few tries.
        Each try is shielded: cancelling the caller does not cancel a queued write
        (it would silently lose what it carried). ``key`` (a job or step id) picks the
        writer thread: one key's writes commit, and are published, in order.

        ``recover``: where the dialect keeps receipts, the write commits one under an id
        chosen once, here; a connection that dies after its COMMIT was sent leaves the
        outcome unknown, so every retry first looks, under the job's lock, for that receipt:
        found, the write is not run again and its result is read back (``recover``).
        """
        writer = self._writers[self.writer_of(key)]
        loop = self._bind()
        write_id = new_id() if self._dialect.receipts and recover is not None else None
        tries = 0
        # Known down: a command still tries once (the database may be back), then answers.
        fast_tries = FAST_TRIES if self._health.available else 1
        call: Callable[..., Any] = fn
        call_args: tuple[Any, ...] = args
        while True:
            try:
                return cast(T, await _on_thread(loop, writer, self._try_write, name, call,
                                                call_args, write_id, tries > 0))
            except _Committed as done:
                assert recover is not None
                log.warning("%s: its COMMIT's reply was lost, and it had committed: read back, "
                            "not run again", name)
                call, call_args, write_id = self._recovered, (done.receipt, recover), None
                continue
            except IntegrityError:
                if write_id is None or tries == 0:
                    raise
                # A retry's insert met its own first try's row, which committed meanwhile:
                # the next try finds the receipt.
                tries += 1
                continue
            except _StorageFault as fault:
                tries += 1
                if (self._health.lost or self._health.closed.is_set()
                        or (not wait and tries >= fast_tries)):
                    raise StoreUnavailable(fault.reason) from None
            # The writer thread is free meanwhile: commands fail fast instead of queueing.
            await asyncio.sleep(min(MAX_BACKOFF_S, 0.05 * 2 ** tries))

    def _try_write(self, name: str, fn: Callable[..., T], args: tuple[Any, ...],
                   write_id: str | None = None, retry: bool = False) -> T:
        self._tls.write_id, self._tls.retry = write_id, retry
        listeners = self.listeners
        try:
            self._health.raise_if_lost()
            if listeners.before_write is not None:
                listeners.before_write(name)
            started = time.perf_counter()
            result = fn(*args)
            if listeners.write_timer is not None:
                listeners.write_timer(name, time.perf_counter() - started)
        except DBAPIError as exc:
            if isinstance(exc, IntegrityError) or not _storage_fault(exc):
                raise
            self._health.contact(False, storage_reason(exc))
            raise _StorageFault(storage_reason(exc)) from exc
        finally:
            self._tls.write_id, self._tls.retry = None, False
        self._health.contact(True, "")
        return result

    @property
    def write_id(self) -> str | None:
        """The receipt id of the write running on this thread (None: no receipt)."""
        return getattr(self._tls, "write_id", None)

    def check_receipt(self, c: Connection) -> None:
        """In a retried write, under the job's lock: raise _Committed if its first try committed
        (a first try still in flight held that lock, so it has ended either way by now)."""
        write_id = self.write_id
        if write_id is None or not getattr(self._tls, "retry", False):
            return
        row = c.execute(_RECEIPT, {"k": write_id}).first()
        if row is not None:
            raise _Committed(Receipt(row.job_id, row.first_seq, row.last_seq))

    def _recovered(self, receipt: Receipt, recover: Recover) -> Any:
        """A write that committed though its reply was lost: its result and events, read back
        (the events are published as its commit would have)."""
        with self._dialect.engine.begin() as c:
            n = receipt.last_seq - receipt.first_seq + 1
            events = _read_events(c, receipt.job_id, receipt.first_seq - 1, n) if n > 0 else []
            result, logs = recover(c, receipt)
        self.committed(events, logs)
        return result

    def committed(self, events: list[Event], logs: set[tuple[str, int]] | None = None) -> None:
        """On the writer thread, after a commit: the listeners hear of it on the loop."""
        if self._loop is None:
            return
        if events and self.listeners.events is not None:
            self._loop.call_soon_threadsafe(self.listeners.events, events)
        if logs and self.listeners.logs is not None:
            self._loop.call_soon_threadsafe(self.listeners.logs, logs)

    async def lease_op(self, fn: Callable[..., T], *args: Any) -> T:
        """On the lease thread. Its faults count for health (on PostgreSQL the lease sweep is
        the probe)."""
        try:
            return await self._bind().run_in_executor(self._lease_thread, fn, *args)
        except DBAPIError as exc:
            if _storage_fault(exc):
                self._health.contact(False, storage_reason(exc))
            raise


def _on_thread(loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor,
               fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``fn(*args)`` on ``executor``; its outcome in the future returned, set from that thread.

    Cancelling the future (the caller's task was cancelled) leaves the call running or
    queued: a write once asked for is not dropped. What ``run_in_executor`` under
    ``asyncio.shield`` does, in one future instead of three (each a turn of the loop before
    the caller resumes, with every other ready callback of that turn run first)."""
    out: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed over whole: the caller classifies it
            loop.call_soon_threadsafe(settle, out, None, exc)
        else:
            loop.call_soon_threadsafe(settle, out, result, None)

    executor.submit(run)
    return out
