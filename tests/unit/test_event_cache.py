"""The watch cache answers a page only with what a read of the log returns there.

A model log of framed events ends (or not yet) with the job's terminal event; reads of
pages at any place and size go into the cache in any order, some not contiguous, some
of a log that has grown since; every answer the cache gives must be the read's answer
at that place, and its size must stay within its budget.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator_service.codec import Framed
from orchestrator_service.eventcache import EventCache
from orchestrator_service.model import Event, JobState
from orchestrator_service.statuses import JobStatus


def terminal(seq: int) -> Event:
    job = JobState("j", "d", "", "stop", JobStatus.COMPLETED, 0, seq)
    return Event("j", seq, 0, job=job)


def log_of(n: int, ended: bool) -> list[Event | Framed]:
    log: list[Event | Framed] = [Framed(s, b"r%d" % s) for s in range(1, n + 1)]
    if ended:
        log.append(terminal(n + 1))
    return log


def read(log: list[Event | Framed], after: int, limit: int) -> list[Event | Framed]:
    return log[after:after + limit]


def wire(items: list[Event | Framed]) -> list[tuple[int, bytes | None]]:
    return [(i.seq, i.response if isinstance(i, Framed) else None) for i in items]


ops = st.lists(st.tuples(st.sampled_from(["put", "page", "grow", "gap"]),
                         st.integers(0, 60), st.integers(1, 25)), max_size=40)


@given(n=st.integers(1, 50), ops=ops, budget=st.integers(200, 4000))
def test_every_answer_is_the_read_at_that_place(n: int, ops: list[tuple[str, int, int]],
                                                 budget: int) -> None:
    cache = EventCache(max_bytes=budget)
    log = log_of(n, ended=False)
    for op, after, limit in ops:
        after = min(after, len(log))
        if op == "grow" and not log[-1].ends_job:  # the job goes on, or ends
            log = log_of(len(log) + limit, ended=limit % 3 == 0)
        elif op == "put":
            cache.put("j", after, read(log, after, limit))
        elif op == "gap":  # a page that does not start right after ``after``: not kept
            cache.put("j", max(0, after - 1), read(log, after, limit))
        for at in range(len(log) + 1):  # every place and size, not only the op's own
            for size in (1, 2, 7, limit, len(log) + 1):
                got = cache.page("j", at, size)
                if got is not None:
                    assert wire(got) == wire(read(log, at, size)), (op, at, size)
                    assert len(got) == size or got[-1].ends_job
        assert cache.size <= budget
    cache.forget(["j"])
    assert cache.size == 0  # what it counted is what it held: nothing left over


def test_a_page_is_answered_only_when_held_whole_or_through_the_end() -> None:
    cache = EventCache()
    log = log_of(10, ended=False)
    cache.put("j", 0, read(log, 0, 5))
    assert cache.page("j", 0, 5) == log[0:5]
    assert cache.page("j", 2, 3) == log[2:5]
    assert cache.page("j", 2, 4) is None  # the 6th event is not held: a read must say
    assert cache.page("j", 5, 1) is None
    cache.put("j", 3, read(log, 3, 7))  # overlapping: extends the run
    assert cache.page("j", 0, 10) == log
    assert cache.page("j", 8, 5) is None  # the log may go on past the 10th
    ended = log_of(10, ended=True)
    cache.put("j", 10, read(ended, 10, 5))
    assert cache.page("j", 8, 500) == ended[8:]  # held through the job's end


def test_the_least_recently_read_job_goes_first_and_a_deleted_one_at_once() -> None:
    one = log_of(20, ended=True)
    cache = EventCache(max_bytes=10_000)
    for job in ("a", "b"):
        cache.put(job, 0, one)
    assert cache.page("a", 0, 500) is not None
    cache.put("c", 0, one)
    assert cache.page("b", 0, 500) is None  # b was the least recently read
    assert cache.page("a", 0, 500) == one and cache.page("c", 0, 500) == one
    cache.forget(["a", "c"])
    assert cache.page("a", 0, 500) is None and cache.size == 0
