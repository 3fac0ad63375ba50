"""Each job's lease on its own clock, on a real PostgreSQL, with the real lease loop.

A write of a job holds its row's lock until COMMIT; nobody can claim a locked row, and
the write's commit extends the lease. So a job written back to back by long
transactions keeps its lease (the renewal skips its row instead of queueing behind it,
which once left every lease unrenewed for the length of the queue: a 30,000-child job on
a 3 s lease abandoned itself). A row locked by anyone else for longer than the watchdog's
margin costs that job, and that job alone, its lease: abandoned here before the lease
can end on the database's clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import cast

import psycopg
import pytest
from sqlalchemy import select

from orchestrator_service.broker import Broker
from orchestrator_service.definitions import parse_definition
from orchestrator_service.engine import Engine
from orchestrator_service.leases import Claimed, LeaseBook, db_now_us
from orchestrator_service.model import JobState
from orchestrator_service.replicas import SELF_FENCE, Replicas
from orchestrator_service.rules import Decision
from orchestrator_service.step_types import load_step_types
from orchestrator_service.store import J, Store

LEASE = 2.0
TOML = 'name = "clock"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'
TYPES = load_step_types()


class Abandons:
    """The part of the engine the lease loop calls, recorded (when each job was abandoned)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.at: dict[str, float] = {}

    def abandon(self, job_id: str) -> None:
        self.at.setdefault(job_id, time.monotonic())
        self.store.holding.drop(job_id)

    def carry_out_cancel(self, job_id: str) -> None:
        raise AssertionError(f"nobody asked to cancel {job_id}")

    async def adopt(self, claimed: Claimed) -> None:
        return None


@pytest.fixture
async def replica(pg_url: str) -> AsyncIterator[tuple[Store, Abandons]]:
    store = Store(pg_url, leases=LeaseBook("clock", lease_us=int(LEASE * 1e6)))
    store.migrate()
    engine = Abandons(store)
    replicas = Replicas(store, store.leased, cast(Engine, engine), Broker(), LEASE,  # type: ignore[arg-type]
                        on_deleted=lambda ids: None)
    await replicas.start()
    yield store, engine
    await replicas.stop()
    store.close()


async def create(store: Store) -> JobState:
    job, _ = await store.writes.create_job(parse_definition(TOML, TYPES), TOML)
    return job


async def on_distinct_writers(store: Store, n: int) -> list[JobState]:
    """``n`` jobs whose writes run on different writer threads (one thread commits a job's
    writes in order), so that their rows are locked at the same time."""
    jobs: dict[int, JobState] = {}
    while len(jobs) < n:
        job = await create(store)
        jobs.setdefault(store.runner.writer_of(job.job_id), job)
    return list(jobs.values())


def expiry_and_now(store: Store, job_id: str) -> tuple[int, int]:
    """The job's lease expiry and the database's clock (µs), read without any lock."""
    with store.engine.connect() as c:
        expires = c.execute(select(J.c.lease_expires_at).where(J.c.job_id == job_id)).scalar_one()
        return int(expires), db_now_us(c)


async def abandoned(engine: Abandons, job_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while job_id not in engine.at:
        assert time.monotonic() < deadline, f"{job_id} not abandoned within {timeout} s"
        await asyncio.sleep(0.02)  # a poll of the watchdog's doing, with a deadline


@contextmanager
def row_locked_elsewhere(url: str, job_id: str) -> Iterator[float]:
    """Another session holds the job's row (FOR UPDATE) until the block ends; yields when
    (monotonic) it got the lock."""
    conn = psycopg.connect(url.replace("+psycopg", ""))
    try:
        conn.execute("SELECT 1 FROM jobs WHERE job_id = %s FOR UPDATE", (job_id,))
        yield time.monotonic()
    finally:
        conn.rollback()
        conn.close()


async def test_jobs_written_back_to_back_keep_their_leases_and_so_does_an_idle_one(
        replica: tuple[Store, Abandons]) -> None:
    """Three jobs, each written by long transactions back to back (their rows locked most
    of the time), and an idle one: a renewal that waited for each locked row in turn left
    every lease unrenewed for the sum of those waits."""
    store, engine = replica
    busy = await on_distinct_writers(store, 3)
    idle = await create(store)
    transactions = 0

    def long_transaction(job: JobState) -> Decision:
        nonlocal transactions
        transactions += 1
        # The work of a big batch, done while the transaction holds the job's row lock: the
        # length of the transaction is what this test is about, not a wait for an event.
        time.sleep(0.25 * LEASE)
        return Decision()

    async def write_back_to_back(job: JobState) -> None:
        began = time.monotonic()
        while time.monotonic() - began < 3 * LEASE:
            await store.writes.decide_job(job.job_id, long_transaction)

    await asyncio.gather(*(write_back_to_back(job) for job in busy))
    assert transactions >= 3 * 8  # ~12 each: the three were written at the same time
    assert engine.at == {}, f"abandoned: {engine.at}"
    for job in (*busy, idle):
        assert store.holding.runs_here(job.job_id)
        expires, now = expiry_and_now(store, job.job_id)
        assert expires - now > 0.3 * LEASE * 1e6, (job.job_id, expires - now)


async def test_a_row_locked_by_another_session_costs_that_job_its_lease_in_time(
        replica: tuple[Store, Abandons], pg_url: str) -> None:
    store, engine = replica
    stuck, other = await create(store), await create(store)
    with row_locked_elsewhere(pg_url, stuck.job_id) as locked_at:
        expires, _ = expiry_and_now(store, stuck.job_id)
        await abandoned(engine, stuck.job_id, timeout=2 * LEASE)
        _, now = expiry_and_now(store, stuck.job_id)  # read after the abandon: a later clock
        after = engine.at[stuck.job_id] - locked_at
        # Renewals went on for every other job meanwhile: they skip the locked row.
        assert other.job_id not in engine.at and store.holding.runs_here(other.job_id)
    # Its last extension began at most a sweep before the lock; the watchdog looks every
    # 0.02 lease: abandoned within SELF_FENCE of a lease of it, well before the lease ends.
    assert after <= (SELF_FENCE + 0.05) * LEASE, after
    assert now < expires, f"abandoned {(now - expires) / 1e6:.2f} s after the lease ended"
    assert not store.holding.runs_here(stuck.job_id)
