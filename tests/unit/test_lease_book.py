"""The lease book keeps a clock per job: when its latest extension began."""

from __future__ import annotations

from orchestrator_service.leases import LeaseBook


def test_the_book_keeps_each_jobs_clock() -> None:
    book = LeaseBook("b", lease_us=10_000_000)
    book.take("x", 1, since=100.0)
    book.take("y", 1, since=100.0)
    book.extended(["x"], since=104.0)
    book.extended(["x"], since=103.0)  # an older extension committed later: no step back
    book.extended(["z"], since=104.0)  # not held: nothing to extend
    assert book.stale(5.0, now=106.0) == {"y": 6.0}
    assert book.age("x", now=106.0) == 2.0 and book.age("z") == float("inf")
    assert book.drop("y") and not book.drop("y")
    assert book.stale(0.0, now=106.0) == {"x": 2.0} and book.held() == {"x": 1}
    book.take("x", 2, since=90.0)  # claimed again: a new epoch, its own extension
    assert book.age("x", now=106.0) == 16.0
