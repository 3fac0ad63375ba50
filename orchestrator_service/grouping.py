"""Group commit of a job's step writes: while one transaction of the job is in flight, the
step writes that arrive wait and go together in the next one.

A job of many independent steps asks for a start and an end write per step; committed one
by one they queue on the (single, for SQLite) writer thread, each paying a transaction's
fixed cost. Grouped, 64 steps starting at once are one transaction. Each write is still
decided against its step's row inside the transaction, and every event is still in the
log in commit order: grouping changes how many commits there are, not what they say.

A group that fails is tried again write by write, so one write's error (a stale attempt)
is that write's alone, as it was without grouping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from .futures import settle
from .model import StepState
from .store import StepWrite

__all__ = ["StepWriteGroup"]

WriteSteps = Callable[[Sequence[StepWrite]], Awaitable[list[StepState]]]


class StepWriteGroup:
    def __init__(self, write: WriteSteps) -> None:
        self._write = write
        self._queue: list[tuple[StepWrite, asyncio.Future[StepState]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, w: StepWrite) -> StepState:
        """Commit ``w`` (with whatever else is waiting); its step as written. Cancelling the
        caller does not take the write back: once asked for, it is committed (as the store's
        writes are shielded)."""
        # Not shielded: cancelling the caller cancels only this future; the write stays in
        # the queue (or in flight) and is committed, and its settling skips a done future.
        return await self.submit(w)

    def submit(self, w: StepWrite) -> asyncio.Future[StepState]:
        """Queue ``w``; the future of its step as written. Writes submitted in one turn of
        the loop go in one transaction unless that transaction fails (then one by one)."""
        fut: asyncio.Future[StepState] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieved)
        self._queue.append((w, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="step-write-group")
        return fut

    async def _flush(self) -> None:
        group: list[tuple[StepWrite, asyncio.Future[StepState]]] = []
        try:
            while self._queue:
                group, self._queue = self._queue, []
                try:
                    written = await self._write([w for w, _ in group])
                except Exception as exc:
                    if len(group) == 1:
                        settle(group[0][1], exc=exc)
                    else:
                        await self._one_by_one(group)
                    continue
                for (_, fut), step in zip(group, written, strict=True):
                    settle(fut, step)
        except BaseException:  # cancelled (shutdown): nobody waits forever
            for _, fut in [*group, *self._queue]:
                fut.cancel()
            self._queue = []
            raise
        finally:
            self._flusher = None

    async def _one_by_one(self, group: list[tuple[StepWrite, asyncio.Future[StepState]]]) -> None:
        for w, fut in group:
            try:
                [step] = await self._write([w])
            except Exception as exc:
                settle(fut, exc=exc)
            else:
                settle(fut, step)


def _retrieved(fut: asyncio.Future[StepState]) -> None:
    """A caller that was cancelled never reads its write's error: read it here (no warning)."""
    if not fut.cancelled():
        fut.exception()
