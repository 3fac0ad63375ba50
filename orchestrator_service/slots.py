"""Slots: how many step attempts run at once across all jobs (``--max-running-steps``).

A ready step waits PENDING for a slot, first come first served. A step that ends may hand
its slot straight to the step its end makes ready (jobrun.py) — but only while no other
step waits: a chain must not keep a slot that others queue for.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = ["Hold", "Slots"]


class Slots:
    def __init__(self, n: int) -> None:
        self._sem = asyncio.Semaphore(n)
        self._waiting = 0

    async def acquire(self) -> None:
        self._waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self._waiting -= 1

    def release(self) -> None:
        self._sem.release()

    @property
    def contended(self) -> bool:
        """Whether some step waits for a slot now."""
        return self._waiting > 0


@dataclass
class Hold:
    """Whether one step's task holds a slot: released by the task's done-callback, so the
    slot comes back however the task ends, even cancelled before it began."""

    held: bool

    def release(self, slots: Slots) -> None:
        if self.held:
            self.held = False
            slots.release()
