"""Child progress of one step attempt: counted in memory, persisted in batches.

Child transitions are buffered and written at most every ``interval`` seconds
in one transaction with the step's counts and one step event, so a step with
thousands of children costs a few writes a second, not one per child. A step
status transition never goes through here: the attempt's last batch is handed
back by ``finish()`` and committed together with the attempt's new status.

Nothing taken from the buffer is ever dropped: the periodic flush is never
cancelled mid-write (store writes are shielded, and ``finish`` waits for a
flush in flight), and a flush that fails puts its batch back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace

from .model import ChildCounts
from .statuses import ChildStatus
from .step_types.base import DocumentPut
from .store import ProgressBatch, StaleWrite, Store

__all__ = ["ProgressRecorder"]

log = logging.getLogger(__name__)


class ProgressRecorder:
    def __init__(self, store: Store, step_id: str, attempt: int, total: int,
                 interval: float) -> None:
        self._store = store
        self._step_id = step_id
        self._attempt = attempt
        self._interval = interval
        self.counts = ChildCounts(total=total, pending=total)
        self._status: list[ChildStatus] = [ChildStatus.PENDING] * total
        self._changes: list[tuple[int, int, str | None]] = []
        self._docs: list[DocumentPut] = []
        self._doc_delta = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.errors: list[str] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop(), name=f"progress-{self._step_id}")

    def running(self, i: int) -> None:
        self._move(i, ChildStatus.RUNNING, None)

    def completed(self, i: int, puts: Sequence[DocumentPut]) -> None:
        self._move(i, ChildStatus.COMPLETED, None)
        self._docs.extend(puts)
        self._doc_delta += len(puts)

    def failed(self, i: int, error: str) -> None:
        self.errors.append(error)
        self._move(i, ChildStatus.FAILED, error)

    async def finish(self) -> ProgressBatch:
        """Stop the periodic flush (waiting for one in flight) and take what is left.

        The caller commits the returned batch with the attempt's new status.
        """
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                # Shielded: a cancelled caller must not cancel the flush it waits for.
                await asyncio.shield(self._task)
        return self._take()

    def _move(self, i: int, new: ChildStatus, error: str | None) -> None:
        old = self._status[i]
        if old == new:
            return
        self._status[i] = new
        c = self.counts
        fields = {_FIELD[old]: getattr(c, _FIELD[old]) - 1, _FIELD[new]: getattr(c, _FIELD[new]) + 1}
        self.counts = replace(c, **fields)
        self._changes.append((i, int(new), error))

    def _take(self) -> ProgressBatch:
        batch = ProgressBatch(self._step_id, self._attempt, self._changes, self._docs,
                              self.counts, self._doc_delta)
        self._changes, self._docs, self._doc_delta = [], [], 0
        return batch

    def _put_back(self, batch: ProgressBatch) -> None:
        self._changes = batch.children + self._changes
        self._docs = batch.documents + self._docs
        self._doc_delta += batch.document_delta

    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                # A pacing interval that ends early when the attempt finishes.
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set() or not self._changes and not self._docs:
                continue
            batch = self._take()
            try:
                await self._store.record_progress(batch)
            except StaleWrite:
                return  # the attempt is over (decided elsewhere): nothing more to write
            except Exception:
                self._put_back(batch)  # the attempt's final write carries it
                log.warning("progress write for step %s failed; kept for the attempt's end",
                            self._step_id, exc_info=True)
                return


_FIELD = {
    ChildStatus.PENDING: "pending",
    ChildStatus.RUNNING: "running",
    ChildStatus.COMPLETED: "completed",
    ChildStatus.FAILED: "failed",
    ChildStatus.CANCELLED: "cancelled",
}
