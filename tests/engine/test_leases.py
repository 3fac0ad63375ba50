"""Leases on a real PostgreSQL: two stores (two replicas' books) on one database.

Only the lease holder at its epoch may write a job; an expired lease is claimed by
exactly one replica (SKIP LOCKED), its epoch grows, and the old holder's writes
and renewals are refused; a cancel for a job held elsewhere is recorded for the
owner, or taken over when the lease has lapsed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update

from orchestrator_service import rules
from orchestrator_service.definitions import parse_definition
from orchestrator_service.leases import LeaseBook
from orchestrator_service.model import JobState
from orchestrator_service.step_types import load_step_types
from orchestrator_service.store import J, LeaseLost, StepWrite, Store, now_us

TOML = 'name = "l"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'
TYPES = load_step_types()


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[tuple[Store, Store, Store]]:
    made = [Store(pg_url, leases=LeaseBook(name, lease_us=60_000_000)) for name in "abc"]
    made[0].migrate()
    yield made[0], made[1], made[2]
    for s in made:
        s.close()


async def create(store: Store) -> JobState:
    job, _ = await store.writes.create_job(parse_definition(TOML, TYPES), TOML)
    return job


def expire(store: Store, job_ids: list[str]) -> None:
    with store.engine.begin() as c:
        c.execute(update(J).where(J.c.job_id.in_(job_ids)).values(lease_expires_at=0))


async def start(store: Store, job_id: str) -> JobState:
    return await store.writes.decide_job(job_id, lambda j: rules.start_job(j, now_us()))


async def test_only_the_holder_writes_and_a_takeover_fences_the_old_holder(
        stores: tuple[Store, Store, Store]) -> None:
    a, b, _ = stores
    job = await create(a)
    assert a.holding.runs_here(job.job_id)
    with pytest.raises(LeaseLost):
        await start(b, job.job_id)
    await start(a, job.job_id)
    assert (await b.leased.claim_jobs(10)) == []  # a live lease is not claimable

    expire(a, [job.job_id])
    [claimed] = await b.leased.claim_jobs(10)
    assert (claimed.job_id, claimed.epoch, claimed.takeover) == (job.job_id, 2, True)
    step = (await b.reads.get_job(job.job_id)).steps[0]
    write = StepWrite(step.step_id, step.attempt, lambda s: rules.start_attempt(s, now_us()))
    with pytest.raises(LeaseLost):  # the old holder's late write
        await a.writes.write_steps(job.job_id, [write])
    [written] = await b.writes.write_steps(job.job_id, [write])
    assert written.attempt == 1
    renewal = await a.leased.renew_leases()
    assert renewal.lost == {job.job_id} and not renewal.renewed
    assert (await b.leased.renew_leases()).renewed == {job.job_id}


async def test_an_expired_lease_is_claimed_by_exactly_one_replica(
        stores: tuple[Store, Store, Store]) -> None:
    a, b, c = stores
    jobs = [await create(a) for _ in range(60)]
    expire(a, [j.job_id for j in jobs])
    # Two replicas sweep at the same moment, in batches: no job is claimed twice.
    claims = await asyncio.gather(*(s.leased.claim_jobs(7) for s in (b, c) for _ in range(6)))
    claimed = [cl.job_id for batch in claims for cl in batch]
    while more := [cl.job_id for s in (b, c) for cl in await s.leased.claim_jobs(50)]:
        claimed += more
    assert sorted(claimed) == sorted(j.job_id for j in jobs)
    held_b, held_c = b.leased.book.held(), c.leased.book.held()  # type: ignore[union-attr]
    assert not set(held_b) & set(held_c)
    assert set(held_b) | set(held_c) == {j.job_id for j in jobs}


async def test_a_cancel_for_a_job_held_elsewhere_is_recorded_or_taken_over(
        stores: tuple[Store, Store, Store]) -> None:
    a, b, _ = stores
    live, lapsed = await create(a), await create(a)
    assert await b.holding.request_cancel(live.job_id) is None  # recorded for its owner
    renewal = await a.leased.renew_leases()
    assert live.job_id in renewal.cancel_requested and live.job_id in renewal.renewed
    expire(a, [lapsed.job_id])
    claimed = await b.holding.request_cancel(lapsed.job_id)
    assert claimed is not None and claimed.epoch == 2 and b.holding.runs_here(lapsed.job_id)
    cancelled = await b.writes.decide_job(lapsed.job_id, lambda j: rules.cancel(j, now_us()))
    assert cancelled.status.terminal
    assert lapsed.job_id in (await a.leased.renew_leases()).ended
