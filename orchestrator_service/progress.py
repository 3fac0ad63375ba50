"""Child progress of one step attempt: counted in memory, persisted in batches.

Child transitions are buffered and written at most every ``interval`` seconds
in one transaction with the step's counts and one step event, so a step with
thousands of children costs a few writes a second, not one per child. A step
status transition never goes through here: the engine writes it on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import replace

from .model import ChildCounts
from .statuses import ChildStatus
from .step_types.base import DocumentPut
from .store import ProgressBatch, Store


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
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self.errors: list[str] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop())

    def running(self, i: int) -> None:
        self._move(i, ChildStatus.RUNNING, None)

    def completed(self, i: int, puts: Sequence[DocumentPut]) -> None:
        self._move(i, ChildStatus.COMPLETED, None)
        self._docs.extend(puts)
        self._doc_delta += len(puts)

    def failed(self, i: int, error: str) -> None:
        self.errors.append(error)
        self._move(i, ChildStatus.FAILED, error)

    def cancel_unfinished(self) -> None:
        for i, st in enumerate(self._status):
            if st in (ChildStatus.PENDING, ChildStatus.RUNNING):
                self._move(i, ChildStatus.CANCELLED, None)

    async def close(self) -> None:
        """Stop the periodic flush and write what is left (no event: the status write follows)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._flush(emit=False)

    def _move(self, i: int, new: ChildStatus, error: str | None) -> None:
        old = self._status[i]
        if old == new:
            return
        self._status[i] = new
        c = self.counts
        fields = {_FIELD[old]: getattr(c, _FIELD[old]) - 1, _FIELD[new]: getattr(c, _FIELD[new]) + 1}
        self.counts = replace(c, **fields)
        self._changes.append((i, int(new), error))
        self._dirty = True

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)  # a pacing interval, not a wait for an event
            await self._flush(emit=True)

    async def _flush(self, emit: bool) -> None:
        if not self._dirty:
            return
        batch = ProgressBatch(self._step_id, self._attempt, self._changes, self._docs,
                              self.counts, self._doc_delta, emit)
        self._changes, self._docs, self._doc_delta, self._dirty = [], [], 0, False
        await self._store.record_progress(batch)


_FIELD = {
    ChildStatus.PENDING: "pending",
    ChildStatus.RUNNING: "running",
    ChildStatus.COMPLETED: "completed",
    ChildStatus.FAILED: "failed",
    ChildStatus.CANCELLED: "cancelled",
}
