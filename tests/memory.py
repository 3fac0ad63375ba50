"""This process's resident memory, sampled while something runs (tests and benchmarks)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


def rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


@contextmanager
def peak_rss_growth(every_s: float = 0.005) -> Iterator[list[int]]:
    """Samples RSS while the block runs; yields a list that then holds [peak growth in bytes]."""
    base, peak, stop = rss(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss() - base)
            stop.wait(every_s)  # a sampling period, not a wait for an event

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out: list[int] = []
    try:
        yield out
    finally:
        stop.set()
        t.join()
        out.append(peak[0])
