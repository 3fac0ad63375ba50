"""Child progress and output of one step attempt: counted in memory, persisted in batches.

Child transitions and output lines are buffered and written at most every
``interval`` seconds with the step's counts and one step event, in the job's
next group of step writes (grouping.py), so a step with thousands of children
costs a few writes a second, not one per child, and many steps share them. A
step status transition never goes through here: the attempt's last batch is
handed back by ``finish()`` and committed together with the attempt's new status.

Nothing taken from the buffer is ever dropped: the periodic flush is never
cancelled mid-write (store writes are shielded, and ``finish`` waits for a
flush in flight), and a flush that fails puts its batch back. Output is
bounded: past ``log_cap`` bytes a child's output is counted, not kept, and a
note says how much was dropped.

A write is bounded too: at most ``CHUNK`` child changes per transaction, a backlog
written as several, each with the counts as of its last change. A write holds the job's
row lock until its COMMIT, and on shared PostgreSQL that COMMIT is what renews the
job's lease while the row is busy: one transaction of 17,000 children (1.5 s) once cost
a 3 s lease its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from . import rules
from .futures import settle
from .model import ChildCounts
from .statuses import ChildStatus, LogStream
from .step_types.base import DocumentPut
from .store import ChildChange, LogLine, ProgressBatch, StaleWrite, now_us

__all__ = ["DEFAULT_LOG_CAP", "InitOutput", "ProgressRecorder"]

log = logging.getLogger(__name__)

#: Commits a batch of the attempt's progress (no transition).
WriteProgress = Callable[[ProgressBatch], Awaitable[object]]
DEFAULT_LOG_CAP = 1 << 20  # bytes of output kept per child
RESULT_CHARS = 1000
#: Child changes per transaction (~0.2 s on PostgreSQL here, a few ms on SQLite).
CHUNK = 2000
# A NUL byte of output, as text every database stores (PostgreSQL's text refuses NUL); one
# byte for one, as hexdump shows bytes it cannot print, so the output cap stays exact.
NUL_SHOWN = "."


class InitOutput:
    """What a step's init logs, before there are children (kept for the attempt's first write)."""

    def __init__(self, cap: int = DEFAULT_LOG_CAP) -> None:
        self.lines: list[LogLine] = []
        self._left = cap

    def write(self, child: int | None, stream: LogStream, data: str, nbytes: int) -> None:
        if self._left > 0:
            self._left -= nbytes
            self.lines.append(LogLine(None, int(stream), data, now_us()))

    def result(self, child: int, text: str) -> None:
        pass


class ProgressRecorder:
    def __init__(self, write: WriteProgress, step_id: str, attempt: int, total: int,
                 interval: float, log_cap: int = DEFAULT_LOG_CAP,
                 max_failures: int = 0, keys: Sequence[str] | None = None,
                 init_logs: Sequence[LogLine] = ()) -> None:
        """``keys``: the attempt's children, inserted with its first write (then ``total`` is
        their number); ``init_logs``: what its init logged, written before any child's;
        ``write`` commits a batch while the attempt goes on (with the job's other step writes)."""
        self._write = write
        #: The step's tolerance: more failed children than this end the attempt.
        self.max_failures = max_failures
        self._step_id = step_id
        self._attempt = attempt
        self._interval = interval
        self._cap = log_cap
        # Counts by field, moved in place (a ChildCounts per child move cost more than the
        # child's own work); ``counts`` is their snapshot.
        self._n = dict.fromkeys(_FIELD.values(), 0) | {"pending": total}
        self._total = total
        self._status: list[ChildStatus] = [ChildStatus.PENDING] * total
        self._changes: list[ChildChange] = []
        #: Per change, the documents its child put (they go in the same transaction).
        self._change_docs: list[int] = []
        self._docs: list[DocumentPut] = []
        # The children as last committed: the counts of a chunk are computed from them.
        self._saved: list[ChildStatus] = [ChildStatus.PENDING] * total
        self._saved_n = dict(self._n)
        self._unsaved: tuple[dict[str, int], dict[int, ChildStatus]] | None = None
        #: A write failed or was refused: what is left goes with the attempt's end only.
        self._no_chunks = False
        self._logs: list[LogLine] = list(init_logs)
        self._new_children = keys
        self._doc_delta = 0
        self._bytes: dict[int, int] = {}
        self._dropped: dict[int, int] = {}
        self._results: dict[int, str] = {}
        self._stopping = False
        # The pause between two flushes: a future that the end (finish) settles early.
        self._pause: asyncio.Future[None] | None = None
        # Until the first interval has passed there is no flush task, only this timer: a
        # step that ends sooner (most quick ones) never makes one.
        self._first: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self.errors: list[str] = []

    @property
    def counts(self) -> ChildCounts:
        return ChildCounts(total=self._total, **self._n)

    def over_tolerance(self) -> bool:
        """More children failed than the step tolerates: the attempt stops starting more."""
        return rules.over_tolerance(self._n["failed"], self.max_failures)

    def start(self) -> None:
        self._started = True
        self._first = asyncio.get_running_loop().call_later(self._interval, self._begin)

    def _begin(self) -> None:
        self._first = None
        if not self._stopping:
            self._task = asyncio.create_task(self._flush_loop(), name=f"progress-{self._step_id}")

    # -- children ----------------------------------------------------------------

    # ``at``: when it happened, if not now (a worker thread's outcomes arrive in batches).

    def running(self, i: int, at: int | None = None) -> None:
        self._move(i, ChildStatus.RUNNING, None, at)

    def completed(self, i: int, puts: Sequence[DocumentPut], at: int | None = None) -> None:
        self._move(i, ChildStatus.COMPLETED, None, at)
        if puts:
            self._docs.extend(puts)
            self._doc_delta += len(puts)
            if self._change_docs:
                self._change_docs[-1] += len(puts)

    def failed(self, i: int, error: str, at: int | None = None) -> None:
        error = error.replace("\x00", NUL_SHOWN)
        self.errors.append(error)
        self._move(i, ChildStatus.FAILED, error, at)

    # -- output (OutputSink) -----------------------------------------------------------

    def write(self, child: int | None, stream: LogStream, data: str, nbytes: int) -> None:
        if "\x00" in data:  # binary output: kept readable, and storable as text everywhere
            data = data.replace("\x00", NUL_SHOWN)
        if child is not None:
            used = self._bytes.get(child, 0)
            self._bytes[child] = used + nbytes
            room = self._cap - used
            if room <= 0:
                self._dropped[child] = self._dropped.get(child, 0) + nbytes
                return
            if nbytes > room:
                kept = data.encode()[:room].decode("utf-8", "ignore")
                self._dropped[child] = self._dropped.get(child, 0) + nbytes - len(kept.encode())
                data = kept
        self._logs.append(LogLine(child, int(stream), data, now_us()))

    def result(self, child: int, text: str) -> None:
        self._results[child] = text[:RESULT_CHARS].replace("\x00", NUL_SHOWN)

    async def finish(self) -> ProgressBatch:
        """Stop the periodic flush (waiting for one in flight) and take what is left.

        The caller commits the returned batch with the attempt's new status: a backlog
        over ``CHUNK`` is written first, in chunks, so that transaction is bounded too.
        """
        self._stopping = True
        if self._first is not None:
            self._first.cancel()
            self._first = None
        if self._pause is not None:
            settle(self._pause)
        if self._task is not None:
            with contextlib.suppress(Exception):
                # Shielded: a cancelled caller must not cancel the flush it waits for.
                await asyncio.shield(self._task)
        if self._started and not self._no_chunks:
            with contextlib.suppress(Exception):  # a failed chunk is carried by the end
                while len(self._changes) > CHUNK:
                    await asyncio.shield(self._write_chunk())
        return self._take()

    def _move(self, i: int, new: ChildStatus, error: str | None, at: int | None) -> None:
        old = self._status[i]
        if old == new:
            return
        at = now_us() if at is None else at
        self._status[i] = new
        self._n[_FIELD[old]] -= 1
        self._n[_FIELD[new]] += 1
        self._change_docs.append(0)
        if new == ChildStatus.RUNNING:
            self._changes.append(ChildChange(i, new, at))
            return
        dropped = self._dropped.pop(i, 0)
        if dropped:
            self._logs.append(LogLine(i, int(LogStream.SYSTEM), (
                f"[stepwatch] {dropped} bytes of output dropped: a child keeps at most "
                f"{self._cap} bytes\n"), now_us()))
        self._changes.append(ChildChange(i, new, at, error, self._bytes.get(i, 0),
                                         self._results.pop(i, None)))

    def _take(self, limit: int | None = None) -> ProgressBatch:
        """What to write next: everything, or the first ``limit`` changes (with their
        documents and every line of output) and the counts as they stand after them."""
        if limit is None or len(self._changes) <= limit:
            changes, docs, delta = self._changes, self._docs, self._doc_delta
            self._changes, self._change_docs, self._docs, self._doc_delta = [], [], [], 0
        else:
            cut = sum(self._change_docs[:limit])
            changes, docs, delta = self._changes[:limit], self._docs[:cut], cut
            self._changes, self._docs = self._changes[limit:], self._docs[cut:]
            self._change_docs = self._change_docs[limit:]
            self._doc_delta -= cut
        # The counts once these changes commit after the ones before (saved by _saved_ok).
        n, _ = self._unsaved = self._after(changes)
        batch = ProgressBatch(self._step_id, self._attempt, changes, docs,
                              ChildCounts(total=self._total, **n), delta, self._logs,
                              self._new_children)
        self._logs, self._new_children = [], None
        return batch

    def _after(self, changes: Sequence[ChildChange]) -> tuple[dict[str, int], dict[int, ChildStatus]]:
        """The counts by field, and the children moved, once ``changes`` are committed."""
        n, moved = dict(self._saved_n), dict[int, ChildStatus]()
        for ch in changes:
            old = moved.get(ch.child, self._saved[ch.child])
            n[_FIELD[old]] -= 1
            n[_FIELD[ch.status]] += 1
            moved[ch.child] = ch.status
        return n, moved

    def _saved_ok(self) -> None:
        if self._unsaved is not None:
            self._saved_n, moved = self._unsaved
            for child, status in moved.items():
                self._saved[child] = status
            self._unsaved = None

    def _put_back(self, batch: ProgressBatch) -> None:
        self._unsaved = None
        self._changes = batch.children + self._changes
        self._change_docs = [0] * len(batch.children) + self._change_docs
        if batch.children:  # its documents, in front again, go with its first change
            self._change_docs[0] += batch.document_delta
        self._docs = batch.documents + self._docs
        self._logs = batch.logs + self._logs
        self._doc_delta += batch.document_delta
        if batch.new_children is not None:
            self._new_children = batch.new_children

    async def _write_chunk(self) -> None:
        batch = self._take(CHUNK)
        try:
            await self._write(batch)
        except StaleWrite:
            self._no_chunks = True  # the attempt is over (decided elsewhere)
            raise
        except Exception:
            self._no_chunks = True  # the attempt's final write carries it
            self._put_back(batch)
            raise
        self._saved_ok()

    async def _flush_loop(self) -> None:
        """Started one interval after ``start``: a flush, then one each interval after."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if self._changes or self._docs or self._logs or self._new_children is not None:
                try:
                    while True:  # a backlog in bounded transactions, back to back
                        await self._write_chunk()
                        if len(self._changes) <= CHUNK or self._stopping:
                            break
                except StaleWrite:
                    return  # the attempt is over (decided elsewhere): nothing more to write
                except Exception:  # put back: the attempt's final write carries it
                    log.warning("progress write for step %s failed; kept for the attempt's end",
                                self._step_id, exc_info=True)
                    return
            if self._stopping:
                return
            # A pacing interval that ends early when the attempt finishes (a future and a
            # timer: wait_for would make a task per interval).
            pause = self._pause = loop.create_future()
            timer = loop.call_later(self._interval, settle, pause)
            try:
                await pause
            finally:
                timer.cancel()
                self._pause = None


_FIELD = {
    ChildStatus.PENDING: "pending",
    ChildStatus.RUNNING: "running",
    ChildStatus.COMPLETED: "completed",
    ChildStatus.FAILED: "failed",
    ChildStatus.CANCELLED: "cancelled",
}
