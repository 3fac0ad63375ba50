"""Login throttling, pure (the clock is a parameter): per client address and per user name,
a few free failures, then a growing delay between attempts, then a temporary lockout. An
attempt refused here runs no password hash at all, so a burst costs nothing."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Throttle"]


@dataclass
class _Record:
    failures: int
    last: float


class Throttle:
    def __init__(self, clock: Callable[[], float] = time.monotonic, free: int = 5,
                 base_s: float = 1.0, max_delay_s: float = 60.0, lockout_after: int = 20,
                 lockout_s: float = 900.0, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.free, self.base_s, self.max_delay_s = free, base_s, max_delay_s
        self.lockout_after, self.lockout_s = lockout_after, lockout_s
        self.max_keys = max_keys
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def delay(self, failures: int) -> float:
        """How long after the last failure the next attempt must wait."""
        if failures >= self.lockout_after:
            return self.lockout_s
        if failures < self.free:
            return 0.0
        return float(min(self.max_delay_s, self.base_s * 2.0 ** (failures - self.free)))

    def wait_s(self, keys: Iterable[str]) -> float:
        """Seconds until an attempt for all of ``keys`` may be checked (0: now)."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            rec = self._records.get(key)
            if rec is None:
                continue
            if now - rec.last >= self.lockout_s:  # a quiet spell forgives
                del self._records[key]
                continue
            wait = max(wait, rec.last + self.delay(rec.failures) - now)
        return wait

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        for key in keys:
            rec = self._records.pop(key, None) or _Record(0, now)
            rec.failures += 1
            rec.last = now
            self._records[key] = rec  # most recent last: the oldest go first when full
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)

    def succeeded(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._records.pop(key, None)
