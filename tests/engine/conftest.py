from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from orchestrator_service.broker import Broker
from orchestrator_service.dask_executor import DaskExecutor
from orchestrator_service.definitions import parse_definition
from orchestrator_service.engine import Engine, RunConfig
from orchestrator_service.executors import Executor, InProcessExecutor
from orchestrator_service.leases import LeaseBook
from orchestrator_service.model import Event, JobState
from orchestrator_service.step_types import load_step_types
from orchestrator_service.store import Listeners, Store
from orchestrator_service.watch import Snapshot, follow_job

DEADLINE = 30.0


class Harness:
    """A real engine on a real SQLite file or PostgreSQL database, driven in-process.

    On PostgreSQL it is a replica: its store holds leases, and a restart is a new process of
    the same replica name, which takes its dead predecessor's jobs over (the lease sweep).
    """

    def __init__(self, db: Path | str, workspace: Path,
                 executor: Callable[[], Executor] = InProcessExecutor) -> None:
        self.db = db  # a SQLite file, or a PostgreSQL URL
        self.url = db if isinstance(db, str) else f"sqlite:///{db}"
        self.workspace = workspace
        self.executor = executor
        self.types = load_step_types()
        self.start()

    def start(self) -> None:
        book = (LeaseBook("harness", lease_us=60_000_000) if self.url.startswith("postgresql")
                else None)
        self.broker = Broker()
        self.store = Store(self.url, leases=book, listeners=Listeners(events=self.broker.publish))
        self.store.migrate()
        self.engine = Engine(self.store, self.types,
                             RunConfig(self.workspace, progress_interval=0.05),
                             executor=self.executor())

    async def restart(self) -> None:
        """Stop like a dead process would (steps left RUNNING), start again on the same file."""
        await self.engine.stop()
        self.store.close()
        self.start()
        await self.engine.recover()
        if self.store.leased is not None:
            for claimed in await self.store.leased.claim_jobs(10_000, predecessor=True):
                await self.engine.adopt(claimed)

    async def submit(self, toml: str) -> JobState:
        return await self.engine.submit(parse_definition(toml, self.types), toml)

    async def finish(self, job_id: str) -> JobState:
        async with asyncio.timeout(DEADLINE):
            await self.engine.wait(job_id)
        return await self.store.reads.get_job(job_id)

    async def events(self, job_id: str) -> list[Event]:
        return await self.store.reads.events_after(job_id, 0, 100_000)

    async def until(self, job_id: str, predicate: Callable[[JobState], bool]) -> JobState:
        """Wait (event-driven, with a deadline) until the job's state satisfies ``predicate``."""
        from dataclasses import replace

        state: JobState | None = None
        async with asyncio.timeout(DEADLINE):
            async for item in follow_job(self.store, self.broker, job_id, 0, 1.0):
                if isinstance(item, Snapshot):
                    state = item.job
                elif isinstance(item, Event) and state is not None:
                    if item.step is not None:
                        state = replace(state, steps=tuple(
                            item.step if s.step_id == item.step.step_id else s for s in state.steps))
                    elif item.job is not None:
                        state = replace(item.job, steps=state.steps)
                if state is not None and predicate(state):
                    return state
        raise AssertionError(f"job {job_id} ended without reaching the state waited for: {state}")

    async def close(self) -> None:
        await self.engine.stop()
        self.store.close()


def _database(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> Path | str:
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres").new_database())
    return tmp_path / "engine.db"


@pytest.fixture(params=["sqlite", "postgresql"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    ws = tmp_path / "ws"
    ws.mkdir()
    h = Harness(_database(request, tmp_path, request.param), ws)
    yield h
    await h.close()


@pytest.fixture(params=["inprocess", "dask", "inprocess-postgresql"])
async def any_harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The same engine with children in-process, or on a real Dask cluster (two workers); on
    SQLite, and in-process on PostgreSQL."""
    ws = tmp_path / "ws"
    ws.mkdir()
    if request.param == "dask":
        cluster = request.getfixturevalue("dask_cluster")
        h = Harness(tmp_path / "engine.db", ws, lambda: DaskExecutor(cluster.address, batch_size=4))
    else:
        backend = "postgresql" if request.param.endswith("postgresql") else "sqlite"
        h = Harness(_database(request, tmp_path, backend), ws)
    yield h
    await h.close()
