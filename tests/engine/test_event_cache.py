"""WatchJob's pages from the watch cache are the log's, on SQLite and PostgreSQL: a replay
from any place is the same bytes whether the cache holds its pages or not, a second replay
reads no page from the store, and a watcher following a running job through the cache
misses and repeats nothing."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator_service import codec
from orchestrator_service.eventcache import EventCache
from orchestrator_service.model import Event
from orchestrator_service.watch import PAGE, EncodedSnapshot, Heartbeat, Snapshot, follow_job_pages

from .conftest import Harness

DEADLINE = 120


def steps(n: int) -> str:
    return 'name = "long"\n' + "".join(
        f'[steps.s{i}]\ntype = "shell"\ncommands = ["{"exit 3" if i % 9 == 4 else "true"}"]\n'
        for i in range(n)) + '[policy]\non_step_failure = "continue"\n'


async def replay(harness: Harness, job_id: str, after: int, cache: EventCache | None,
                 ) -> list[tuple[int, bytes]]:
    """(seq, response bytes) of every event sent after ``after`` until the job's end."""
    sent: list[tuple[int, bytes]] = []
    async with asyncio.timeout(DEADLINE):
        async for page in follow_job_pages(harness.store, harness.broker, job_id, after, 5.0,
                                           decoded=False, cache=cache):
            for item in page:
                assert not isinstance(item, Snapshot | EncodedSnapshot | Heartbeat)
                if isinstance(item, Event):
                    sent.append((item.seq, codec.watch_response(item.wire or codec.encode(item))))
                else:
                    sent.append((item.seq, item.response))
    return sent


async def test_replays_through_the_cache_are_the_log_and_read_no_page_twice(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    j = await harness.submit(steps(PAGE // 2 + 40))
    done = await harness.finish(j.job_id)
    assert done.head_seq > 2 * PAGE + 1, "the log must span more than two pages"
    truth = [(ev.seq, codec.watch_response(codec.encode(ev)))
             for ev in await harness.events(j.job_id)]
    reads = harness.store.reads
    pages_read: list[int] = []
    framed_after = reads.framed_after

    async def counted(job_id: str, after_seq: int, limit: int) -> list[object]:
        pages_read.append(after_seq)
        return await framed_after(job_id, after_seq, limit)  # type: ignore[return-value]

    monkeypatch.setattr(reads, "framed_after", counted)
    cache = EventCache()
    places = (1, 2, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE + 3, done.head_seq - 1, done.head_seq)
    for after in places:
        assert await replay(harness, j.job_id, after, None) == truth[after:]
    uncached = len(pages_read)
    assert uncached > 0
    pages_read.clear()
    for after in places:  # the first pass fills the cache (its own reads)...
        assert await replay(harness, j.job_id, after, cache) == truth[after:]
    first_pass = len(pages_read)
    assert first_pass < uncached
    pages_read.clear()
    for after in places:  # ...the second reads no page: every one is held
        assert await replay(harness, j.job_id, after, cache) == truth[after:]
    assert pages_read == []
    assert cache.size > 0


async def test_a_watcher_following_a_running_job_through_the_cache_misses_nothing(
        harness: Harness) -> None:
    cache = EventCache(max_bytes=40_000)  # small: runs are dropped and read again meanwhile
    j = await harness.submit(steps(150))
    # Watchers start one after another while the job runs, each from an early seq.
    watchers = []
    for k in range(6):
        watchers.append(asyncio.create_task(replay(harness, j.job_id, 1 + k, cache)))
        await asyncio.sleep(0)  # let each subscribe at a different head
    await harness.finish(j.job_id)
    truth = [(ev.seq, codec.watch_response(codec.encode(ev)))
             for ev in await harness.events(j.job_id)]
    for k, task in enumerate(watchers):
        got = await task
        assert [s for s, _ in got] == list(range(2 + k, truth[-1][0] + 1))
        assert got == truth[1 + k:]
