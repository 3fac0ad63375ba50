"""The watch cache: stretches of jobs' event logs, as read for senders, kept in memory.

A replay of a job's log (a watcher resuming, a page opening on a finished job, a watcher
catching up after an overflow) reads the log in pages on a reader thread, and framing
those rows costs as much again as sending them. A log is append-only and an event never
changes once committed (it goes only with its job), so a page read once can serve every
later reader of the same stretch: each job keeps one contiguous run of framed events
(the stretch last read), the least recently used jobs go first past a byte budget, and
a deleted job is forgotten. (Kubernetes' API server keeps a watch cache for the same
reason.)

What is served is exactly what a read returned, in the same order: a page is answered
only when the run holds all of it, or holds the log through the event that ended the
job; anything else is read from the store (and extends the run). Pure: no I/O, one
thread (the event loop's).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from .codec import Framed
from .model import Event

__all__ = ["EventCache"]

DEFAULT_BYTES = 64 << 20
_ITEM_COST = 120  # what an item costs beyond its response bytes (tuple, object headers)
_EVENT_COST = 1024  # a decoded event (a job event last on its page): a rough upper bound


@dataclass
class _Run:
    first: int  # the seq of items[0]; items[i] has seq first + i
    items: list[Event | Framed] = field(default_factory=list)
    size: int = 0

    @property
    def end(self) -> int:
        """The seq after the last one held."""
        return self.first + len(self.items)


class EventCache:
    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes held (estimated)."""
        return self._size

    def page(self, job_id: str, after_seq: int, limit: int) -> list[Event | Framed] | None:
        """The ``limit`` events after ``after_seq`` as a read would return them, or None when
        the run does not hold them all (nor the log's end)."""
        run = self._runs.get(job_id)
        if run is None or limit <= 0:
            return None
        start = after_seq + 1 - run.first
        if start < 0 or start >= len(run.items):
            return None
        page = run.items[start:start + limit]
        if len(page) < limit and not page[-1].ends_job:
            return None  # the log may go on past what is held
        self._runs.move_to_end(job_id)
        return page

    def put(self, job_id: str, after_seq: int, page: Sequence[Event | Framed]) -> None:
        """A page read from the store: the events after ``after_seq``, in seq order."""
        if not page or page[0].seq != after_seq + 1 or page[-1].seq != after_seq + len(page):
            return  # not a contiguous stretch from after_seq: positions would not be seqs
        run = self._runs.get(job_id)
        if run is not None and run.first <= after_seq + 1 <= run.end:
            new = page[run.end - (after_seq + 1):]
        else:
            self._drop(job_id)  # a stretch elsewhere in the log: it replaces the run
            run = self._runs[job_id] = _Run(after_seq + 1)
            new = page
        added = sum(_cost(i) for i in new)
        run.items.extend(new)
        run.size += added
        self._size += added
        self._runs.move_to_end(job_id)
        while self._size > self.max_bytes and self._runs:
            self._drop(next(iter(self._runs)))  # the least recently used

    def forget(self, job_ids: Sequence[str]) -> None:
        """Deleted jobs."""
        for job_id in job_ids:
            self._drop(job_id)

    def _drop(self, job_id: str) -> None:
        run = self._runs.pop(job_id, None)
        if run is not None:
            self._size -= run.size


def _cost(item: Event | Framed) -> int:
    return _ITEM_COST + len(item.response) if isinstance(item, Framed) else _EVENT_COST
