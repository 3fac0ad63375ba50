"""The engine against the database's own limit: children/s of a `summarize` step over 5,000
and 50,000 files (persisted and streamed, as a user sees them), next to raw SQLAlchemy Core
doing the same row writes on the same schema (each child: inserted PENDING, set RUNNING, set
COMPLETED with its document updated) in 1,000-row transactions, in the same run."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import grpc
from sqlalchemy import bindparam, create_engine, insert, update

from orchestrator_service.store import Store
from orchestrator_service.tables import ChildRow, DocumentRow, JobRow, StepRow
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator

BATCH = 1000
JOB = ('name = "sum"\n[steps.scan]\ntype = "scan_files"\ninclude = ["files/*.txt"]\n'
       'concurrency = 32\n[steps.s]\ntype = "summarize"\ndepends = ["scan"]\nconcurrency = 32\n')


def make_files(root: Path, n: int) -> None:
    folder = root / "files"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        (folder / f"f{i:06d}.txt").write_text(f"file {i}\nlorem ipsum dolor\n")


def stepwatch_rate(ws: Path, n: int, db_url: str | None = None) -> float:
    """Children/s from the summarize step's first RUNNING event to its COMPLETED event
    (on a new SQLite file in ``ws``, or on the database ``db_url``)."""
    orch = Orchestrator(db_url or f"sqlite:///{ws / f'e{n}.db'}", 0, None, ws)
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=JOB), timeout=60).job
            started = ended = None
            for r in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=1800):
                if r.WhichOneof("kind") != "event" or r.event.step_changed.name != "s":
                    continue
                if r.event.step_changed.status == pb.STEP_STATUS_RUNNING and started is None:
                    started = time.perf_counter()
                if r.event.step_changed.status == pb.STEP_STATUS_COMPLETED:
                    ended = time.perf_counter()
                    assert r.event.step_changed.children.completed == n
            if started is None or ended is None:  # say why, not a bare AssertionError
                job = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=60).job
                raise RuntimeError(f"the summarize step did not complete: job "
                                   f"{pb.JobStatus.Name(job.status)} {job.failure.message!r}\n"
                                   f"{orch.output[-2000:]}")
        return n / (ended - started)
    finally:
        orch.stop()


def core_rate(ws: Path, n: int) -> float:
    """The same rows written by hand with Core, 1,000 to a transaction, on the same schema."""
    url = f"sqlite:///{ws / f'core{n}.db'}"
    Store(url).migrate()  # the same tables, indexes and pragmas
    engine = create_engine(url)
    children, docs = ChildRow.__table__, DocumentRow.__table__
    with engine.begin() as c:
        c.execute(insert(JobRow.__table__).values(
            job_id="j", definition_name="sum", definition_toml="", on_step_failure="stop",
            status=2, created_at=0))
        c.execute(insert(StepRow.__table__).values(
            step_id="s", job_id="j", idx=0, name="s", type="summarize", depends_on="[]",
            options="{}", max_attempts=1, max_child_failures=0, concurrency=32, status=2,
            created_at=0, attempt=1))
        c.execute(insert(docs), [{"job_id": "j", "path": f"files/f{i:06d}.txt", "tags": "[]",
                                  "attrs": "{}"} for i in range(n)])
    start = time.perf_counter()
    for lo in range(0, n, BATCH):
        rows = range(lo, min(n, lo + BATCH))
        with engine.begin() as c:
            c.execute(insert(children), [{"step_id": "s", "attempt": 1, "idx": i,
                                          "key": f"files/f{i:06d}.txt", "status": 1}
                                         for i in rows])
        with engine.begin() as c:
            c.execute(update(children).where(children.c.step_id == "s", children.c.attempt == 1,
                                             children.c.idx == bindparam("b_idx"))
                      .values(status=2, started_at=bindparam("b_t")),
                      [{"b_idx": i, "b_t": 1} for i in rows])
        with engine.begin() as c:
            c.execute(update(children).where(children.c.step_id == "s", children.c.attempt == 1,
                                             children.c.idx == bindparam("b_idx"))
                      .values(status=3, finished_at=bindparam("b_t")),
                      [{"b_idx": i, "b_t": 2} for i in rows])
            c.execute(update(docs).where(docs.c.job_id == "j", docs.c.path == bindparam("b_p"))
                      .values(attrs=bindparam("b_a")),
                      [{"b_p": f"files/f{i:06d}.txt",
                        "b_a": json.dumps({"lines": 2, "words": 5, "bytes": 30})} for i in rows])
    took = time.perf_counter() - start
    engine.dispose()
    return n / took


async def main(sizes: tuple[int, ...] = (5000, 50_000)) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        made = 0
        for n in sizes:
            sub = ws / str(n)
            sub.mkdir()
            await asyncio.to_thread(make_files, sub, n)
            made += n
            sw = await asyncio.to_thread(stepwatch_rate, sub, n)
            core = await asyncio.to_thread(core_rate, sub, n)
            lines.append(f"summarize {n:>6,} children: stepwatch {sw:,.0f}/s "
                         f"({1e6 / sw:.0f} us a child), raw Core same writes {core:,.0f}/s "
                         f"({1e6 / core:.0f} us); ratio {sw / core:.2f} (goal >= 0.5, flat in n)")
    return lines


if __name__ == "__main__":
    print("\n".join(asyncio.run(main())))
