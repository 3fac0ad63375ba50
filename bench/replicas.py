"""PostgreSQL next to SQLite, and replicas: what `--db-url postgresql+psycopg://...` costs and
what a second replica buys.

- children/s of a 5,000-child `summarize` step on PostgreSQL next to the same on a SQLite file,
  measured alternately in the same run (goal: PostgreSQL >= 0.9 x SQLite);
- jobs/s of 24 jobs (each a 300-child `summarize`) on one replica, next to the same jobs
  submitted half to each of two replicas on the same database (goal: >= 1.6 x one replica).

With no --db-url the bench starts its own PostgreSQL (Debian's initdb, a temp folder), as the
tests do; with --db-url every measurement gets a fresh database made on that server.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import grpc
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator

from .engine import make_files, stepwatch_rate

JOBS = 24
JOB = ('name = "sum"\n[steps.scan]\ntype = "scan_files"\ninclude = ["files/f000[0-2]*.txt"]\n'
       '[steps.s]\ntype = "summarize"\ndepends = ["scan"]\nconcurrency = 8\n')


class Databases:
    """Fresh PostgreSQL databases: on the server of ``db_url``, or on a cluster of our own."""

    def __init__(self, db_url: str | None) -> None:
        self._own = None
        if db_url is None:
            from tests.postgres import PostgresCluster

            self._own = PostgresCluster()
            db_url = self._own.url()
        self._admin = make_url(db_url)
        self._n = 0

    def fresh(self) -> str:
        self._n += 1
        name = f"stepwatch_bench_{int(time.time())}_{self._n}"
        engine = create_engine(self._admin, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self._admin.set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        if self._own is not None:
            self._own.stop()


def jobs_rate(ws: Path, urls: list[str]) -> float:
    """Jobs/s of JOBS jobs submitted round-robin to one replica per URL (all on one database)."""
    replicas = [Orchestrator(u, 0, None, ws, extra=["--lease-seconds", "10"]) for u in urls]
    try:
        channels = [grpc.insecure_channel(r.target) for r in replicas]
        stubs = [pb_grpc.OrchestratorServiceStub(ch) for ch in channels]
        started = time.perf_counter()
        jobs = [(stubs[i % len(stubs)], stubs[i % len(stubs)].SubmitJob(
            pb.SubmitJobRequest(definition_toml=JOB), timeout=60).job) for i in range(JOBS)]
        for s, job in jobs:  # each followed to its end on the replica that runs it
            for _ in s.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=1800):
                pass
        took = time.perf_counter() - started
        for s, job in jobs:
            assert s.GetJob(pb.GetJobRequest(job_id=job.job_id)).job.status == \
                pb.JOB_STATUS_COMPLETED
        for ch in channels:
            ch.close()
        return JOBS / took
    finally:
        for r in replicas:
            r.stop()


async def main(db_url: str | None, children: int = 5000, rounds: int = 2) -> list[str]:
    dbs = await asyncio.to_thread(Databases, db_url)
    lines = []
    try:
        with tempfile.TemporaryDirectory() as d:
            ws = Path(d)
            await asyncio.to_thread(make_files, ws, children)
            sq, pg = [], []
            for _ in range(rounds):  # alternated, so both see the same machine
                sq.append(await asyncio.to_thread(stepwatch_rate, ws, children))
                pg.append(await asyncio.to_thread(stepwatch_rate, ws, children, dbs.fresh()))
            s, p = sorted(sq)[len(sq) // 2], sorted(pg)[len(pg) // 2]
            lines.append(f"summarize {children:,} children: PostgreSQL {p:,.0f}/s, SQLite {s:,.0f}/s "
                         f"(runs {', '.join(f'{x:,.0f}' for x in pg)} / "
                         f"{', '.join(f'{x:,.0f}' for x in sq)}); ratio {p / s:.2f} (goal >= 0.9)")
            one = await asyncio.to_thread(jobs_rate, ws, [dbs.fresh()])
            url = dbs.fresh()
            two = await asyncio.to_thread(jobs_rate, ws, [url, url])
            lines.append(f"{JOBS} jobs of a 300-child summarize on PostgreSQL: one replica "
                         f"{one:.2f} jobs/s, two replicas {two:.2f} jobs/s; ratio {two / one:.2f} "
                         "(goal >= 1.6)")
    finally:
        dbs.close()
    return lines


if __name__ == "__main__":
    print("\n".join(asyncio.run(main(None))))
