"""Health that tells the truth both ways: NOT_SERVING within about a second of the database
going away, even on an idle server, and SERVING again within a second of its return.

The store's availability moves with every write and lease sweep. This loop covers what
they do not: while unavailable, it probes (a read and a tiny write) every half second, so an
idle server notices the database is back; while available on a network database, it
probes whenever nothing answered for a while, and a probe that hangs (a silent network)
counts as a fault once it is late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy.exc import DBAPIError

from .store.health import Health

__all__ = ["HealthProbe"]

log = logging.getLogger(__name__)
TICK_S = 0.2  # how often the loop looks
PROBE_EVERY_S = 0.5  # while unavailable
LATE_S = 0.8  # a probe that has not answered by then: the database is unreachable


class HealthProbe:
    def __init__(self, health: Health) -> None:
        self.health = health
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-probe")
        self._inflight: Future[None] | None = None
        self._started = 0.0

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(TICK_S)  # a polling period: the database tells us nothing
                self.health.check_file()
                self.tick()
        finally:
            self._thread.shutdown(wait=False, cancel_futures=True)

    def tick(self) -> None:
        now = time.monotonic()
        if self._inflight is not None:
            if not self._inflight.done():
                if now - self._started > LATE_S and self.health.available:
                    self.health.mark_unavailable(
                        f"the database did not answer a probe within {LATE_S:g} s")
                return
            with contextlib.suppress(DBAPIError):
                self._inflight.result()  # the store has noted the outcome already
            self._inflight = None
        health = self.health
        if health.available:
            due = health.probe_when_quiet and now - health.last_contact > LATE_S
        else:
            due = now - self._started >= PROBE_EVERY_S and health.probe_allowed
        if due:
            self._started = now
            self._inflight = self._thread.submit(health.probe)
