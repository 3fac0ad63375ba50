"""Persistence: the one write path, fenced, costing O(what changed).

Every change commits the rows it changes and its events together, with ``seq``
allocated under the job's row lock (SELECT ... FOR UPDATE; SQLite serialises
writers anyway). Committed events are handed to the listener (the broker) on
the event loop, in commit order, and only after the commit.

Fencing: a step write names the attempt it belongs to. A write for another
attempt, to a terminal step, or to a terminal job is refused (``StaleWrite``),
so nothing follows a job's terminal event. When an attempt ends, its last child
changes commit with its new status, and any child still PENDING or RUNNING is
closed out (CANCELLED) and counted in that same transaction: a step never
leaves an attempt with unfinished children, and the counts in every event
equal the child rows as of its commit.

Writes run on one thread for SQLite (a single writer) and on several for
PostgreSQL, keyed by job (decisions, with every header event) or by step
(children and logs), each key's writes on one thread and so in commit order; a
watcher that receives a job's events out of order reads them from the log. They
are shielded from the caller's cancellation: a write once asked for is never
dropped. Reads run on their own threads so a busy
writer does not hold them up.

Replicas (PostgreSQL): with a ``LeaseBook`` every write of a job also checks,
under the job's row lock, that this process holds the job's lease at the epoch
it claimed (``LeaseLost`` otherwise), and each commit tells the other replicas
through ``pg_notify`` which job's log grew.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Row,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from .. import leases
from ..definitions import JobDefinition
from ..leases import Claimed, LeaseBook, Renewal
from ..model import (
    ChildCounts,
    Event,
    JobState,
    StepState,
)
from ..rules import Decision
from ..statuses import ChildStatus, JobStatus, LogStream, StepStatus
from ..step_types.base import Document
from .changes import _append_logs, _apply_progress, _delete_jobs, _fence, _transition
from .connect import PG_WRITERS, _is_memory, make_engine
from .errors import (
    AmbiguousId,
    JobNotFound,
    JobStillRunning,
    LeaseLost,
    Receipt,
    RequestConflict,
    StaleWrite,
    StepNotFound,
    StoreUnavailable,
    _Committed,
    _storage_fault,
    _StorageFault,
    storage_reason,
)
from .eventlog import _Log
from .rows import (
    _CHILD_COUNT_COLUMNS,
    _INSERT_CHILDREN,
    _JOB_OF_STEP,
    _LOCK_JOB,
    _NOTIFY,
    _PROBE_WRITE,
    _RECEIPT,
    _SET_STEP_COUNTS,
    _STEP,
    HEX,
    LH,
    MIN_PREFIX,
    REQUEST_ID_TTL_US,
    C,
    D,
    J,
    L,
    M,
    R,
    S,
    _attempt_logs,
    _child_record,
    _header,
    _params,
    _read_events,
    _step_from_values,
    _step_state,
    _step_values,
)
from .values import (
    ChildRecord,
    LogChunk,
    LogLine,
    LogPage,
    ProgressBatch,
    Recover,
    RequestKey,
    Rerun,
    StepWrite,
    new_id,
    now_us,
)

log = logging.getLogger(__name__)


T = TypeVar("T")


Listener = Callable[[list[Event]], None]


FAST_TRIES = 3  # a command's write (SubmitJob, CancelJob) tries this often, then answers UNAVAILABLE


MAX_BACKOFF_S = 2.0  # a running job's write retries at least this often while storage is down


RECEIPT_TTL_US = 3600 * 1_000_000  # a write's receipt outlives any retry of it by far


class Store:
    def __init__(self, url: str, *, before_write: Callable[[str], None] | None = None,
                 leases: LeaseBook | None = None) -> None:
        self.url = url
        self.engine = make_engine(url, 10.0 if leases is None else leases.lease_us / 1e6)
        #: True on a database several replicas may share (PostgreSQL).
        self.shared = self.engine.url.get_backend_name() == "postgresql"
        # A read of several statements sees one snapshot: SQLite's transactions do (WAL), and
        # PostgreSQL's REPEATABLE READ (its READ COMMITTED, which writers keep, would let the
        # job's row and its steps come from two different commits).
        self.reading = (self.engine.execution_options(isolation_level="REPEATABLE READ")
                        if self.shared else self.engine)
        #: The leases this process holds; None: it alone writes the database (no lease checks).
        self.leases = leases
        n = PG_WRITERS if self.shared else 1
        self._writers = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"store-write{i}")
                         for i in range(n)]
        self._writer = self._writers[0]
        # An in-memory SQLite database is one per connection: read it on the writer's thread.
        self._reader = (self._writer if _is_memory(url)
                        else ThreadPoolExecutor(max_workers=4 if self.shared else 2,
                                                thread_name_prefix="store-read"))
        self._lease_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-lease")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listener | None = None
        self._log_listener: Callable[[set[tuple[str, int]]], None] | None = None
        self._delete_listener: Callable[[list[str]], None] | None = None
        #: Called on the writer thread before each write, with its name (tests delay it).
        self.before_write = before_write
        self._closed = threading.Event()
        self._secret: bytes | None = None
        #: False while writes fail for a storage reason; the server's health follows it.
        self.available = True
        self.unavailable_reason = ""
        #: Called on the event loop when ``available`` changes: (available, reason).
        self.on_availability: Callable[[bool, str], None] | None = None
        self._availability_lock = threading.Lock()
        self._file_id: tuple[int, int] | None = None
        self._lost: str | None = None  # the database file is gone: never writable again
        self._tls = threading.local()  # the write id of the transaction on this writer thread
        self._next_prune = 0.0
        #: monotonic time of the last statement the database answered (health's freshness)
        self.last_contact = time.monotonic()

    @property
    def identity(self) -> str:
        """Which database this is, stably and without secrets (an absolute path for SQLite)."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return os.path.abspath(url.database)
        return url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        from ..migrations import upgrade_to_head

        upgrade_to_head(self.engine)

    def set_listener(self, listener: Listener) -> None:
        """Receives each transaction's committed events, on the event loop, in commit order."""
        self._listener = listener

    def close(self) -> None:
        self._closed.set()
        for w in self._writers:
            w.shutdown(wait=True)
        self._lease_thread.shutdown(wait=True)
        if self._reader is not self._writer:
            self._reader.shutdown(wait=True)
        self.engine.dispose()

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        self._loop = asyncio.get_running_loop()
        try:
            return await self._loop.run_in_executor(self._reader, fn, *args)
        except DBAPIError as exc:
            if not _storage_fault(exc):
                raise
            raise StoreUnavailable(storage_reason(exc)) from exc

    async def _write(self, name: str, fn: Callable[..., T], *args: Any, wait: bool = True,
                     key: str = "", recover: Recover | None = None) -> T:
        """Run a write transaction on the writer thread; retry while storage is faulty.

        ``wait``: a running job's write waits out a storage fault (retrying with
        backoff, however long it lasts); a command's write (wait=False) tries at
        least once, and answers StoreUnavailable after a few tries.
        Each try is shielded: cancelling the caller does not cancel a queued write
        (it would silently lose what it carried). ``key`` (a job or step id) picks the
        writer thread: one key's writes commit, and are published, in order.

        ``recover``: on PostgreSQL the write commits a receipt under an id chosen once,
        here; a connection that dies after its COMMIT was sent leaves the outcome unknown,
        so every retry first looks, under the job's lock, for that receipt: found, the
        write is not run again and its result is read back (``recover``).
        """
        writer = self._writers[hash(key) % len(self._writers)]
        self._loop = asyncio.get_running_loop()
        write_id = new_id() if self.shared and recover is not None else None
        tries = 0
        # Known down: a command still tries once (the database may be back), then answers.
        fast_tries = FAST_TRIES if self.available else 1
        call: Callable[..., Any] = fn
        call_args: tuple[Any, ...] = args
        while True:
            fut = self._loop.run_in_executor(writer, self._try_write, name, call, call_args,
                                             write_id, tries > 0)
            try:
                return cast(T, await asyncio.shield(fut))
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
                if self._lost is not None or self._closed.is_set() or (not wait and tries >= fast_tries):
                    raise StoreUnavailable(fault.reason) from None
            # The writer thread is free meanwhile: commands fail fast instead of queueing.
            await asyncio.sleep(min(MAX_BACKOFF_S, 0.05 * 2 ** tries))

    #: Told how long each write transaction took (metrics); called on the writer thread.
    write_timer: Callable[[str, float], None] | None = None

    def _try_write(self, name: str, fn: Callable[..., T], args: tuple[Any, ...],
                   write_id: str | None = None, retry: bool = False) -> T:
        self._tls.write_id, self._tls.retry = write_id, retry
        try:
            self._check_file()
            if self.before_write is not None:
                self.before_write(name)
            started = time.perf_counter()
            result = fn(*args)
            if self.write_timer is not None:
                self.write_timer(name, time.perf_counter() - started)
        except DBAPIError as exc:
            if isinstance(exc, IntegrityError) or not _storage_fault(exc):
                raise
            self._contact(False, storage_reason(exc))
            raise _StorageFault(storage_reason(exc)) from exc
        finally:
            self._tls.write_id, self._tls.retry = None, False
        self._contact(True, "")
        return result

    def _recovered(self, receipt: Receipt, recover: Recover) -> Any:
        """A write that committed though its reply was lost: its result and events, read back
        (the events are published as its commit would have)."""
        with self.engine.begin() as c:
            n = receipt.last_seq - receipt.first_seq + 1
            events = _read_events(c, receipt.job_id, receipt.first_seq - 1, n) if n > 0 else []
            result, logs = recover(c, receipt)
        self._committed(events, logs)
        return result

    def _check_receipt(self, c: Connection) -> None:
        """In a retried write, under the job's lock: raise _Committed if its first try committed
        (a first try still in flight held that lock, so it has ended either way by now)."""
        write_id = getattr(self._tls, "write_id", None)
        if write_id is None or not getattr(self._tls, "retry", False):
            return
        row = c.execute(_RECEIPT, {"k": write_id}).first()
        if row is not None:
            raise _Committed(Receipt(row.job_id, row.first_seq, row.last_seq))

    # -- availability ------------------------------------------------------------

    def watch_file(self) -> None:
        """Remember the SQLite file's identity, so that its deletion or replacement is noticed."""
        path = self._file_path()
        if path is not None:
            st = os.stat(path)
            self._file_id = (st.st_dev, st.st_ino)

    def check_file(self) -> None:
        """Called periodically and before each write: a deleted or replaced file stops all writes."""
        try:
            self._check_file()
        except _StorageFault:
            pass

    def _check_file(self) -> None:
        if self._lost is not None:
            raise _StorageFault(self._lost)
        path = self._file_path()
        if path is None or self._file_id is None:
            return
        try:
            st = os.stat(path)
            same = (st.st_dev, st.st_ino) == self._file_id
        except FileNotFoundError:
            same = False
        if not same:
            self._lost = (f"the database file {path} was deleted or replaced while the server ran; "
                          "writes are refused so nothing is lost silently: restart the server")
            log.error("%s", self._lost)
            self._set_available(False, self._lost)
            raise _StorageFault(self._lost)

    def _file_path(self) -> str | None:
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return os.path.abspath(url.database)
        return None

    def probe(self) -> None:
        """A read and a tiny write, on a connection of their own (health's probe; blocking).
        Tells availability both ways; raises the database's error."""
        try:
            with self.engine.begin() as c:
                c.execute(select(literal(1))).scalar()
                c.execute(_PROBE_WRITE, {"v": str(now_us())})
        except DBAPIError as exc:
            if isinstance(exc, IntegrityError) or not _storage_fault(exc):
                raise
            self._contact(False, storage_reason(exc))
            raise
        self._contact(True, "")

    @property
    def probe_allowed(self) -> bool:
        """Whether probing can tell anything (not for a lost file or an in-memory database)."""
        return self._lost is None and not _is_memory(self.url) and not self._closed.is_set()

    def mark_unavailable(self, reason: str) -> None:
        self._contact(False, reason)

    def _contact(self, ok: bool, reason: str) -> None:
        """The database answered (or failed to): the freshness health is judged by."""
        if ok:
            self.last_contact = time.monotonic()
        self._set_available(ok, reason)

    def _set_available(self, ok: bool, reason: str) -> None:
        if ok and self._lost is not None:
            return
        with self._availability_lock:
            if ok == self.available and reason == self.unavailable_reason:
                return
            changed = ok != self.available
            self.available, self.unavailable_reason = ok, reason
        if changed:
            if ok:
                log.warning("storage is writable again")
            else:
                log.error("storage unavailable: %s", reason)
            if self.on_availability is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self.on_availability, ok, reason)

    def set_log_listener(self, listener: Callable[[set[tuple[str, int]]], None]) -> None:
        """Told, after each commit that wrote output, which (step_id, attempt) logs grew."""
        self._log_listener = listener

    def _committed(self, events: list[Event], logs: set[tuple[str, int]] | None = None) -> None:
        if self._loop is None:
            return
        if events and self._listener is not None:
            self._loop.call_soon_threadsafe(self._listener, events)
        if logs and self._log_listener is not None:
            self._loop.call_soon_threadsafe(self._log_listener, logs)

    # -- public, async -------------------------------------------------------

    async def create_rerun(self, definition: JobDefinition, source_toml: str, rerun: Rerun,
                           request: RequestKey | None = None,
                           source: str = "inline") -> tuple[JobState, bool]:
        """A new job rerunning ``rerun.original``: its carried steps COMPLETED, its documents copied."""
        return await self.create_job(definition, source_toml, request, source, rerun)

    async def definition_text(self, job_id: str) -> tuple[str, str]:
        """A job's definition text, and where it came from ("catalog" or "inline")."""
        return await self._read(self._definition_text, job_id)

    async def create_job(self, definition: JobDefinition, source_toml: str,
                         request: RequestKey | None = None, source: str = "inline",
                         rerun: Rerun | None = None) -> tuple[JobState, bool]:
        """The new job, and True; or, for a request key seen in the last day, that job and
        False (RequestConflict when that key asked for something else)."""
        job_id = new_id()  # once, outside the retries: a retried create makes this job or none

        def recover(c: Connection, r: Receipt) -> tuple[Any, set[tuple[str, int]]]:
            if self.leases is not None:
                self.leases.take(job_id, 1)
            return (self._read_job(c, r.job_id), True), set()

        try:
            return await self._write("create_job", self._create_job, job_id, definition,
                                     source_toml, request, rerun, source, wait=False,
                                     recover=recover)
        except IntegrityError:
            if request is None:
                raise
            # Another replica created it between our look-up and insert: it is the job.
            return await self._write("create_job", self._create_job, new_id(), definition,
                                     source_toml, request, rerun, source, wait=False)

    async def page_secret(self) -> bytes:
        """This database's secret for signing page tokens (made on first use)."""
        if self._secret is None:
            try:
                self._secret = await self._write("page_secret", self._page_secret)
            except IntegrityError:  # another replica made it first: read theirs
                self._secret = await self._write("page_secret", self._page_secret)
        return self._secret

    async def write_steps(self, job_id: str, writes: Sequence[StepWrite]) -> list[StepState]:
        """Step transitions of one job in one transaction; each fenced by its attempt."""
        def recover(c: Connection, r: Receipt) -> tuple[Any, set[tuple[str, int]]]:
            steps = [_step_state(c.execute(_STEP, {"k": w.step_id}).one()) for w in writes]
            return steps, _attempt_logs(steps)

        return await self._write("write_steps", self._write_steps, job_id, writes, key=job_id,
                                 recover=recover)

    async def decide_job(self, job_id: str, decide: Callable[[JobState], Decision]) -> JobState:
        """Read the whole job under its lock, let ``decide`` (a rule) say what changes, write it.

        For the decisions taken once per job (start, stop, cancel, finish, recovery).
        """
        def recover(c: Connection, r: Receipt) -> tuple[Any, set[tuple[str, int]]]:
            job = self._read_job(c, job_id)
            return job, _attempt_logs(job.steps)

        return await self._write("decide_job", self._decide_job, job_id, decide, key=job_id,
                                 recover=recover)

    def require_available(self) -> None:
        """For commands: answer at once, rather than wait, when storage is known down."""
        if not self.available:
            raise StoreUnavailable(self.unavailable_reason)

    async def start_children(self, step_id: str, attempt: int, keys: Sequence[str],
                             logs: Sequence[LogLine] = ()) -> StepState:
        """An attempt's children, PENDING; with what its init logged."""
        def recover(c: Connection, r: Receipt) -> tuple[Any, set[tuple[str, int]]]:
            return _step_state(c.execute(_STEP, {"k": step_id}).one()), {(step_id, attempt)}

        return await self._write("start_children", self._start_children, step_id, attempt, keys,
                                 logs, key=step_id, recover=recover)

    async def record_progress(self, progress: ProgressBatch) -> None:
        def recover(c: Connection, r: Receipt) -> tuple[Any, set[tuple[str, int]]]:
            return None, {(progress.step_id, progress.attempt)}

        await self._write("record_progress", self._record_progress, progress,
                          key=progress.step_id, recover=recover)

    async def get_job(self, job_id: str) -> JobState:
        return await self._read(self._get_job, job_id)

    async def job_header(self, job_id: str) -> JobState:
        """The job without its steps (raises JobNotFound)."""
        return await self._read(self._job_header, job_id)

    async def head(self, job_id: str) -> int:
        """The job's head seq (raises JobNotFound)."""
        return await self._read(self._head, job_id)

    async def resume(self, job_id: str, after_seq: int, limit: int,
                     decoded: bool = True) -> tuple[int, JobStatus, list[Event]]:
        """Head seq, status and the first events after ``after_seq``, read in one transaction."""
        return await self._read(self._resume, job_id, after_seq, limit, decoded)

    async def events_after(self, job_id: str, after_seq: int, limit: int,
                           decoded: bool = True) -> list[Event]:
        return await self._read(self._events_after, job_id, after_seq, limit, decoded)

    async def list_jobs(self, limit: int, before: int | None = None,
                        status: JobStatus | None = None, name_prefix: str = "",
                        created: tuple[int | None, int | None] = (None, None),
                        ) -> tuple[list[JobState], int | None]:
        """Newest first; ``created`` = (at or after, before) in microseconds."""
        return await self._read(self._list_jobs, limit, before, status, name_prefix, created)

    async def documents(self, job_id: str, tags: Sequence[str] | None = None) -> list[Document]:
        return await self._read(self._documents, job_id, tags)

    async def resolve_job_id(self, ref: str) -> str:
        """A full job id from itself or a unique prefix of 8 or more characters."""
        return await self._read(self._resolve_job_id, ref)

    async def find_step(self, job_id: str, ref: str) -> StepState:
        """A job's step by its step_id or its name (raises StepNotFound)."""
        return await self._read(self._find_step, job_id, ref)

    async def list_children(self, step_id: str, attempt: int, status: ChildStatus | None,
                            failed_first: bool, limit: int,
                            after: tuple[int, int] | None) -> tuple[list[ChildRecord],
                                                                    tuple[int, int] | None]:
        """One page of an attempt's children; ``after`` = (phase, index) of the last one sent."""
        return await self._read(self._list_children, step_id, attempt, status, failed_first,
                                limit, after)

    async def read_logs(self, step_id: str, attempt: int, after: int, limit: int,
                        child: int | None) -> LogPage:
        """The attempt's chunks after ``after`` (one child's, or all), with its head, in one read."""
        return await self._read(self._read_logs, step_id, attempt, after, limit, child)

    async def list_documents(self, job_id: str, tags: Sequence[str], limit: int,
                             after: str | None) -> tuple[list[Document], str | None]:
        return await self._read(self._list_documents, job_id, tags, limit, after)

    async def delete_old_logs(self, before_us: int, batch: int = 1000) -> int:
        """Retention: delete chunks written before ``before_us``, in small transactions."""
        total = 0
        while True:
            n = await self._write("delete_old_logs", self._delete_old_logs, before_us, batch)
            total += n
            if n < batch:
                return total

    async def delete_job(self, job_id: str) -> None:
        """Delete a terminal job and everything it made; a job not terminal yet raises
        JobStillRunning (checked under the job's lock)."""
        await self._write("delete_job", self._delete_job, job_id, wait=False)
        self._deleted([job_id])
        await self._tell_deleted([job_id])

    async def delete_finished_before(self, before_us: int, batch: int = 100) -> list[str]:
        """Delete up to ``batch`` terminal jobs that finished before ``before_us``; their ids."""
        ids = await self._write("retain_jobs", self._delete_finished_before, before_us, batch,
                                wait=False)
        self._deleted(ids)
        await self._tell_deleted(ids)
        return ids

    def set_delete_listener(self, listener: Callable[[list[str]], None]) -> None:
        self._delete_listener = listener

    def _deleted(self, job_ids: list[str]) -> None:
        if self._delete_listener is not None and job_ids:
            self._delete_listener(job_ids)

    async def _tell_deleted(self, job_ids: list[str]) -> None:
        """Other replicas' watchers hear of a deletion too (best effort: a feed resyncs)."""
        if self.leases is not None and self.shared and job_ids:
            with contextlib.suppress(DBAPIError):
                await self.notify(f"d {self.leases.owner} {' '.join(job_ids)}")

    # -- leases (replicas on PostgreSQL; leases.py) ------------------------------

    async def _lease_op(self, fn: Callable[..., T], *args: Any) -> T:
        """On its own thread and connection: a busy or retrying writer never delays a renewal.
        Its faults count for health (on PostgreSQL the lease sweep is the probe)."""
        self._loop = asyncio.get_running_loop()
        try:
            return await self._loop.run_in_executor(self._lease_thread, fn, *args)
        except DBAPIError as exc:
            if _storage_fault(exc):
                self._contact(False, storage_reason(exc))
            raise

    async def claim_jobs(self, limit: int, predecessor: bool = False) -> list[Claimed]:
        """Unowned or expired unfinished jobs (and a dead predecessor's), now held here."""
        return await self._lease_op(self._claim_jobs, limit, predecessor)

    async def renew_leases(self) -> Renewal:
        return await self._lease_op(self._renew_leases)

    async def release_leases(self) -> None:
        await self._lease_op(self._release_leases)

    async def give_back(self, job_id: str, epoch: int) -> None:
        """Stop holding a job at once: dropped from the book, its lease expired (best effort:
        with the database unreachable it expires on its own within a lease)."""
        if self.leases is None:
            return
        self.leases.drop(job_id)
        with contextlib.suppress(DBAPIError):
            await self._lease_op(self._give_back, job_id, epoch)

    def _give_back(self, job_id: str, epoch: int) -> None:
        assert self.leases is not None
        with self.engine.begin() as c:
            leases.release(c, self.leases, {job_id: epoch})

    async def request_cancel(self, job_id: str) -> Claimed | None:
        """Cancel a job held elsewhere: recorded for its owner (None), or, when its lease
        has lapsed, taken over here so that this process cancels it (the claim)."""
        return await self._lease_op(self._request_cancel, job_id)

    async def notify(self, payload: str) -> None:
        await self._lease_op(self._notify, payload)

    def _claim_jobs(self, limit: int, predecessor: bool) -> list[Claimed]:
        assert self.leases is not None
        with self.engine.begin() as c:
            claimed = leases.claim(c, self.leases, limit, predecessor)
        for cl in claimed:
            self.leases.take(cl.job_id, cl.epoch)
        return claimed

    def _renew_leases(self) -> Renewal:
        assert self.leases is not None
        with self.engine.begin() as c:
            renewal = leases.renew(c, self.leases)
        if time.monotonic() >= self._next_prune:  # receipts outlive their retries by far
            self._next_prune = time.monotonic() + 60
            with self.engine.begin() as c:
                c.execute(R.delete().where(R.c.at < now_us() - RECEIPT_TTL_US))
        self._contact(True, "")  # the sweep is the replica's health probe
        return renewal

    def _release_leases(self) -> None:
        assert self.leases is not None
        held = self.leases.held()
        for job_id in held:
            self.leases.drop(job_id)
        with self.engine.begin() as c:
            leases.release(c, self.leases, held)

    def _request_cancel(self, job_id: str) -> Claimed | None:
        assert self.leases is not None
        with self.engine.begin() as c:
            claimed = leases.request_cancel(c, self.leases, self._lock_job(c, job_id))
            if claimed is None:
                c.execute(_NOTIFY, {"p": f"c {self.leases.owner} {job_id}"})
        if claimed is not None:
            self.leases.take(job_id, claimed.epoch)
        return claimed

    def _notify(self, payload: str) -> None:
        with self.engine.begin() as c:
            c.execute(_NOTIFY, {"p": payload})

    async def unfinished_jobs(self) -> list[str]:
        return await self._read(self._unfinished_jobs)

    async def step_options(self, job_id: str) -> dict[str, tuple[dict[str, Any], int]]:
        """step_id -> (the step type's validated options, concurrency)."""
        return await self._read(self._step_options, job_id)

    # -- writes --------------------------------------------------------------

    def _page_secret(self) -> bytes:
        with self.engine.begin() as c:
            value = c.execute(select(M.c.value).where(M.c.key == "page_token_secret")).scalar()
            if value is None:
                value = secrets.token_hex(32)
                c.execute(insert(M).values(key="page_token_secret", value=value))
            return bytes.fromhex(value)

    def _create_job(self, job_id: str, definition: JobDefinition, source_toml: str,
                    request: RequestKey | None, rerun: Rerun | None = None,
                    source: str = "inline") -> tuple[JobState, bool]:
        now = now_us()
        n = len(definition.steps)
        carried = {} if rerun is None else rerun.carried
        with self.engine.begin() as c:
            self._check_receipt(c)  # no lock to take yet: a first try in flight meets the insert
            if request is not None:
                seen = c.execute(select(J.c.job_id, J.c.created_at, J.c.request_digest)
                                 .where(J.c.request_id == request.key)).first()
                if seen is not None and now - seen.created_at < REQUEST_ID_TTL_US:
                    if seen.request_digest != request.digest:
                        raise RequestConflict(seen.job_id)
                    return self._read_job(c, seen.job_id), False
                if seen is not None:  # a day old: the key is free again
                    c.execute(update(J).where(J.c.job_id == seen.job_id).values(request_id=None))
            # With replicas, the replica that creates a job runs it: it holds the lease at once.
            lease = ({} if self.leases is None
                     else leases.lease_values(self.leases, leases.db_now_us(c), 1))
            c.execute(insert(J).values(
                request_id=None if request is None else request.key,
                request_digest=None if request is None else request.digest, source=source, **lease,
                job_id=job_id, definition_name=definition.name, description=definition.description,
                definition_toml=source_toml, on_step_failure=definition.on_step_failure.value,
                status=int(JobStatus.PENDING), head_seq=0, created_at=now,
                rerun_of=None if rerun is None else rerun.original,
                steps_total=n, steps_pending=n - len(carried), steps_running=0,
                steps_completed=len(carried), steps_failed=0, steps_skipped=0, steps_cancelled=0))
            step_rows = [
                {"step_id": new_id(), "job_id": job_id, "idx": i, "name": d.name, "type": d.type,
                 "depends_on": json.dumps(list(d.depends)), "options": json.dumps(d.options),
                 "max_attempts": d.max_attempts, "max_child_failures": d.max_child_failures,
                 "timeout_seconds": d.timeout, "concurrency": d.concurrency,
                 "status": int(StepStatus.PENDING), "tolerated": False, "attempt": 0,
                 "created_at": now, "document_count": 0, "children_total": 0,
                 "children_pending": 0, "children_running": 0, "children_completed": 0,
                 "children_failed": 0, "children_cancelled": 0,
                 "failure_reason": None, "failure_message": None, "previous_failure_reason": None,
                 "previous_failure_message": None, "started_at": None, "finished_at": None,
                 "carried_from": None, "attempts": "[]"}
                for i, d in enumerate(definition.steps)
            ]
            for row in step_rows:
                done = carried.get(str(row["name"]))
                if done is not None and rerun is not None:  # what the original completed stays so
                    row.update(_step_values(done), status=int(StepStatus.COMPLETED),
                               carried_from=rerun.original, failure_reason=None,
                               failure_message=None, previous_failure_reason=None,
                               previous_failure_message=None, tolerated=False)
            c.execute(insert(S), step_rows)
            if rerun is not None and carried:
                c.execute(insert(D).from_select(
                    ["job_id", "path", "tags", "attrs"],
                    select(literal(job_id), D.c.path, D.c.tags, D.c.attrs)
                    .where(D.c.job_id == rerun.original)))
            log_ = self._log(c, job_id, fence=False)  # its lease is the one inserted above
            log_.header()
            steps = [_step_from_values(r) for r in step_rows]
            for st in steps:
                log_.step(st)
            events = log_.flush()
            state = replace(log_.state(), steps=tuple(steps))
        if self.leases is not None:  # held once committed: a renewal never sees it uncommitted
            self.leases.take(job_id, 1)
        self._committed(events, log_.log_keys)
        return state, True

    def _write_steps(self, job_id: str, writes: Sequence[StepWrite]) -> list[StepState]:
        with self.engine.begin() as c:
            log_ = self._log(c, job_id)
            log_.refuse_if_terminal()
            out = []
            for w in writes:
                row = c.execute(_STEP, {"k": w.step_id}).first()
                if row is None or row.job_id != job_id:
                    raise StaleWrite(f"step {w.step_id} is not a step of job {job_id}")
                current = _step_state(row)
                _fence(current, w.attempt)
                if w.progress is not None:
                    current = _apply_progress(c, log_, current, w.progress)
                out.append(_transition(c, log_, current, w.decide(current)))
            events = log_.flush()
        self._committed(events, log_.log_keys)
        return out

    def _decide_job(self, job_id: str, decide: Callable[[JobState], Decision]) -> JobState:
        with self.engine.begin() as c:
            log_ = self._log(c, job_id)
            steps = {r.step_id: _step_state(r) for r in
                     c.execute(select(S).where(S.c.job_id == job_id).order_by(S.c.idx))}
            decision = decide(replace(log_.state(), steps=tuple(steps.values())))
            if not decision.empty:
                log_.refuse_if_terminal()
            for t in decision.steps:
                steps[t.step_id] = _transition(c, log_, steps[t.step_id], t)
            if decision.job is not None:
                log_.set_job(decision.job)
            events = log_.flush()
            state = replace(log_.state(), steps=tuple(steps.values()))
        self._committed(events, log_.log_keys)
        return state

    def _start_children(self, step_id: str, attempt: int, keys: Sequence[str],
                        logs: Sequence[LogLine]) -> StepState:
        with self.engine.begin() as c:
            job_id = c.execute(_JOB_OF_STEP, {"k": step_id}).scalar_one()
            log_ = self._log(c, job_id)
            log_.refuse_if_terminal()
            step = before = _step_state(c.execute(_STEP, {"k": step_id}).one())
            _fence(step, attempt)
            if keys:
                c.execute(_INSERT_CHILDREN, [
                    {"step_id": step_id, "attempt": attempt, "idx": i, "key": k,
                     "status": int(ChildStatus.PENDING), "error": None} for i, k in enumerate(keys)])
            step = replace(step, children=ChildCounts(total=len(keys), pending=len(keys)))
            c.execute(_SET_STEP_COUNTS, _params(step_id, _step_values(step),
                                                ("document_count", *_CHILD_COUNT_COLUMNS)))
            if logs:  # the log's head row is made with its first lines, not for every attempt
                _append_logs(c, log_, step_id, attempt, logs)
            if step != before:  # no children and no counts before: nothing changed
                log_.step(step)
            events = log_.flush()
        self._committed(events, log_.log_keys)
        return step

    def _record_progress(self, p: ProgressBatch) -> None:
        with self.engine.begin() as c:
            job_id = c.execute(_JOB_OF_STEP, {"k": p.step_id}).scalar_one()
            log_ = self._log(c, job_id)
            log_.refuse_if_terminal()
            step = _step_state(c.execute(_STEP, {"k": p.step_id}).one())
            _fence(step, p.attempt)
            moved = _apply_progress(c, log_, step, p)
            if moved != step:  # output alone changes no state: no event (its log followers
                log_.step(moved)  # are told through the log keys)
            events = log_.flush()
        self._committed(events, log_.log_keys)

    @staticmethod
    def _lock_job(c: Connection, job_id: str) -> Row[Any]:
        job = c.execute(_LOCK_JOB, {"k": job_id}).first()
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _log(self, c: Connection, job_id: str, fence: bool = True) -> _Log:
        """The job's row, locked and fenced: with leases, only their holder may write it."""
        job = self._lock_job(c, job_id)
        book = self.leases
        if fence and book is not None and not book.holds(job_id, job.lease_owner, job.lease_epoch):
            raise LeaseLost(f"job {job_id} is run by another replica now (lease "
                            f"{job.lease_owner} epoch {job.lease_epoch})")
        self._check_receipt(c)
        return _Log(c, job, book.owner if book is not None and self.shared else None,
                    getattr(self._tls, "write_id", None))

    # -- reads ---------------------------------------------------------------

    def _get_job(self, job_id: str) -> JobState:
        with self.reading.begin() as c:
            return self._read_job(c, job_id)

    @staticmethod
    def _read_job(c: Connection, job_id: str) -> JobState:
        job = c.execute(select(J).where(J.c.job_id == job_id)).first()
        if job is None:
            raise JobNotFound(job_id)
        steps = c.execute(select(S).where(S.c.job_id == job_id).order_by(S.c.idx))
        return replace(_header(job), steps=tuple(_step_state(r) for r in steps))

    def _job_header(self, job_id: str) -> JobState:
        with self.reading.begin() as c:
            job = c.execute(select(J).where(J.c.job_id == job_id)).first()
        if job is None:
            raise JobNotFound(job_id)
        return _header(job)

    def _head(self, job_id: str) -> int:
        with self.reading.begin() as c:
            head = c.execute(select(J.c.head_seq).where(J.c.job_id == job_id)).scalar()
            if head is None:
                raise JobNotFound(job_id)
            return int(head)

    def _resume(self, job_id: str, after_seq: int, limit: int,
                decoded: bool = True) -> tuple[int, JobStatus, list[Event]]:
        with self.reading.begin() as c:
            row = c.execute(select(J.c.head_seq, J.c.status).where(J.c.job_id == job_id)).first()
            if row is None:
                raise JobNotFound(job_id)
            head = row[0]
            events = (_read_events(c, job_id, after_seq, limit, decoded) if after_seq < head
                      else [])
            return head, JobStatus(row[1]), events

    def _events_after(self, job_id: str, after_seq: int, limit: int,
                      decoded: bool = True) -> list[Event]:
        with self.reading.begin() as c:
            return _read_events(c, job_id, after_seq, limit, decoded)

    def _list_jobs(self, limit: int, before: int | None, status: JobStatus | None,
                   name_prefix: str, created: tuple[int | None, int | None],
                   ) -> tuple[list[JobState], int | None]:
        with self.reading.begin() as c:
            q = select(J).order_by(J.c.id.desc()).limit(limit + 1)
            if before is not None:
                q = q.where(J.c.id < before)
            if status is not None:
                q = q.where(J.c.status == int(status))
            if name_prefix:
                q = q.where(J.c.definition_name.startswith(name_prefix, autoescape=True))
            if created[0] is not None:
                q = q.where(J.c.created_at >= created[0])
            if created[1] is not None:
                q = q.where(J.c.created_at < created[1])
            jobs = list(c.execute(q))
            more = len(jobs) > limit
            jobs = jobs[:limit]
            return [_header(j) for j in jobs], (jobs[-1].id if more else None)

    def _documents(self, job_id: str, tags: Sequence[str] | None) -> list[Document]:
        with self.reading.begin() as c:
            rows = c.execute(select(D.c.path, D.c.tags, D.c.attrs).where(D.c.job_id == job_id)
                             .order_by(D.c.path))
            docs = [Document(r.path, tuple(json.loads(r.tags)), json.loads(r.attrs)) for r in rows]
        if tags is None:
            return docs
        wanted = set(tags)
        return [d for d in docs if wanted.intersection(d.tags)]

    def _step_options(self, job_id: str) -> dict[str, tuple[dict[str, Any], int]]:
        with self.reading.begin() as c:
            rows = c.execute(select(S.c.step_id, S.c.options, S.c.concurrency)
                             .where(S.c.job_id == job_id))
            return {r.step_id: (json.loads(r.options), r.concurrency) for r in rows}

    def _definition_text(self, job_id: str) -> tuple[str, str]:
        with self.reading.begin() as c:
            row = c.execute(select(J.c.definition_toml, J.c.source)
                            .where(J.c.job_id == job_id)).first()
        if row is None:
            raise JobNotFound(job_id)
        return str(row.definition_toml), str(row.source)

    def _resolve_job_id(self, ref: str) -> str:
        with self.reading.begin() as c:
            if c.execute(select(J.c.job_id).where(J.c.job_id == ref)).first() is not None:
                return ref
            if len(ref) < MIN_PREFIX or len(ref) >= 32 or not all(ch in HEX for ch in ref):
                raise JobNotFound(ref)
            found = list(c.execute(select(J.c.job_id).where(J.c.job_id.startswith(ref))
                                   .limit(2)).scalars())
        if not found:
            raise JobNotFound(ref)
        if len(found) > 1:
            raise AmbiguousId(f"job id prefix {ref!r} matches more than one job: give more of it")
        return str(found[0])

    def _find_step(self, job_id: str, ref: str) -> StepState:
        with self.reading.begin() as c:
            if c.execute(select(J.c.job_id).where(J.c.job_id == job_id)).first() is None:
                raise JobNotFound(job_id)
            rows = list(c.execute(select(S).where(S.c.job_id == job_id, (S.c.step_id == ref)
                                                  | (S.c.name == ref))))
            if not rows and len(ref) >= MIN_PREFIX and all(ch in HEX for ch in ref):
                rows = list(c.execute(select(S).where(S.c.job_id == job_id,
                                                      S.c.step_id.startswith(ref)).limit(2)))
                if len(rows) > 1:
                    raise AmbiguousId(f"step id prefix {ref!r} matches more than one step")
        if not rows:
            raise StepNotFound(job_id, ref)
        return _step_state(rows[0])

    def _list_children(self, step_id: str, attempt: int, status: ChildStatus | None,
                       failed_first: bool, limit: int,
                       after: tuple[int, int] | None) -> tuple[list[ChildRecord], tuple[int, int] | None]:
        phase, last = after or (0, -1)
        out: list[ChildRecord] = []
        with self.reading.begin() as c:
            while len(out) <= limit and phase < 2:
                q = select(C).where(C.c.step_id == step_id, C.c.attempt == attempt,
                                    C.c.idx > last).order_by(C.c.idx).limit(limit + 1 - len(out))
                if status is not None:
                    q = q.where(C.c.status == int(status))
                if failed_first and phase == 0:
                    q = q.where(C.c.status == int(ChildStatus.FAILED))
                elif failed_first:
                    q = q.where(C.c.status != int(ChildStatus.FAILED))
                rows = list(c.execute(q))
                out += [_child_record(r, phase) for r in rows]
                if len(out) > limit:
                    break
                if not failed_first:
                    break
                phase, last = phase + 1, -1
        if len(out) > limit:
            out = out[:limit]
            return out, (out[-1].phase, out[-1].index)
        return out, None

    def _read_logs(self, step_id: str, attempt: int, after: int, limit: int,
                   child: int | None) -> LogPage:
        with self.reading.begin() as c:
            head = c.execute(select(LH.c.head, LH.c.first_kept).where(
                LH.c.step_id == step_id, LH.c.attempt == attempt)).first()
            step = c.execute(select(S.c.status, S.c.attempt).where(S.c.step_id == step_id)).one()
            ended = StepStatus(step.status).terminal or step.attempt > attempt
            if head is None:
                return LogPage(0, 1, ended, [])
            q = (select(L).where(L.c.step_id == step_id, L.c.attempt == attempt, L.c.offset > after)
                 .order_by(L.c.offset).limit(limit))
            if child is not None:
                q = q.where(L.c.child_idx == child)
            chunks = [LogChunk(r.offset, r.child_idx, LogStream(r.stream), r.text, r.at)
                      for r in c.execute(q)]
            return LogPage(head.head, head.first_kept, ended, chunks)

    def _list_documents(self, job_id: str, tags: Sequence[str], limit: int,
                        after: str | None) -> tuple[list[Document], str | None]:
        wanted = set(tags)
        out: list[Document] = []
        with self.reading.begin() as c:
            if c.execute(select(J.c.job_id).where(J.c.job_id == job_id)).first() is None:
                raise JobNotFound(job_id)
            last = after
            while len(out) <= limit:
                q = select(D.c.path, D.c.tags, D.c.attrs).where(D.c.job_id == job_id)
                if last is not None:
                    q = q.where(D.c.path > last)
                rows = list(c.execute(q.order_by(D.c.path).limit(500)))
                for r in rows:
                    doc = Document(r.path, tuple(json.loads(r.tags)), json.loads(r.attrs))
                    if not wanted or wanted.intersection(doc.tags):
                        out.append(doc)
                if len(rows) < 500:
                    break
                last = rows[-1].path
        if len(out) > limit:
            return out[:limit], out[limit - 1].path
        return out, None

    def _delete_old_logs(self, before_us: int, batch: int) -> int:
        with self.engine.begin() as c:
            rows = list(c.execute(select(L.c.id, L.c.step_id, L.c.attempt, L.c.offset)
                                  .where(L.c.at < before_us).order_by(L.c.id).limit(batch)))
            if not rows:
                return 0
            kept: dict[tuple[str, int], int] = {}
            for r in rows:
                key = (r.step_id, r.attempt)
                kept[key] = max(kept.get(key, 0), r.offset + 1)
            c.execute(L.delete().where(L.c.id.in_([r.id for r in rows])))
            for (step_id, attempt), first in kept.items():
                c.execute(update(LH).where(LH.c.step_id == step_id, LH.c.attempt == attempt,
                                           LH.c.first_kept < first).values(first_kept=first))
            return len(rows)

    def _delete_job(self, job_id: str) -> None:
        with self.engine.begin() as c:
            job = self._lock_job(c, job_id)
            if not JobStatus(job.status).terminal:
                raise JobStillRunning(job_id, JobStatus(job.status))
            _delete_jobs(c, [job_id])

    def _delete_finished_before(self, before_us: int, batch: int) -> list[str]:
        with self.engine.begin() as c:
            ids = list(c.execute(select(J.c.job_id).where(
                J.c.status.in_([int(s) for s in JobStatus if s.terminal]),
                J.c.finished_at < before_us).order_by(J.c.id).limit(batch)).scalars())
            _delete_jobs(c, ids)
            return ids

    def _unfinished_jobs(self) -> list[str]:
        with self.reading.begin() as c:
            return list(c.execute(select(J.c.job_id).where(
                J.c.status.in_([int(JobStatus.PENDING), int(JobStatus.RUNNING)]))
                .order_by(J.c.id)).scalars())
