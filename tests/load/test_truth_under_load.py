"""100 concurrent jobs, 8 clients looping on GetJob, every job watched: no count ever lies.

A real server process on a real SQLite file. For every step of every job, in
every event, in every GetJob answer and in the final state: counts add up, a
terminal step has no pending or running child, the counts equal the child rows
(read from the database file), a scan's document_count equals the files it
scanned, and the snapshot plus the events equal the final GetJob.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from stepwatch.jobview import apply_event, is_terminal
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.invariants import child_rows, job_problems, rows_problems, step_problems
from tests.procs import Orchestrator

# Run alone (make test's second pass): it is the load.
pytestmark = pytest.mark.serial

JOBS = 100
GETTERS = 8
DEADLINE = 240
FILES = {"data/a": 3, "data/b": 2, "data/c/deep": 4}  # 9 .txt files to scan

TOML = '''
name = "load_{i}"
[policy]
on_step_failure = "continue"
[steps.cmds]
type = "shell"
commands = ["true", "sleep 0.0{i_mod}", "exit 1", "echo x >/dev/null", "true"]
max_child_failures = 1
concurrency = 2
[steps.scan]
type = "scan_files"
root = "data"
include = ["**/*.txt"]
concurrency = 3
[steps.sum]
type = "summarize"
depends = ["scan"]
concurrency = 3
[steps.tail]
type = "shell"
commands = ["true", "exit {fail}"]
depends = ["cmds", "sum"]
'''


def _workspace(root: Path) -> Path:
    for folder, n in FILES.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            (root / folder / f"f{k}.txt").write_text(f"line one {k}\nline two\n")
    return root


async def test_counts_hold_under_load(tmp_path: Path, db_url: str) -> None:
    ws = _workspace(tmp_path / "ws")
    server = await asyncio.to_thread(Orchestrator, db_url, 0, None, ws)
    problems: list[str] = []
    finals: dict[str, pb.Job] = {}
    try:
        async with grpc.aio.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            all_done = asyncio.Event()

            async def watch(job_id: str) -> pb.Job:
                job: pb.Job | None = None
                last = 0
                async for r in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=DEADLINE):
                    kind = r.WhichOneof("kind")
                    if kind == "snapshot":
                        job, last = r.snapshot.job, r.snapshot.seq
                        problems.extend(job_problems(job, f"job {job_id} snapshot"))
                    elif kind == "event":
                        assert job is not None and r.event.seq == last + 1, (job_id, r.event.seq, last)
                        last = r.event.seq
                        if r.event.HasField("step_changed"):
                            problems.extend(step_problems(r.event.step_changed,
                                                          f"job {job_id} seq {last}"))
                        job = apply_event(job, r.event)
                        if r.event.HasField("job_changed"):
                            problems.extend(job_problems(job, f"job {job_id} seq {last} (header)"))
                assert job is not None and is_terminal(job), f"stream of {job_id} ended early"
                return job

            async def getter(ids: list[str]) -> int:
                n = 0
                while not all_done.is_set():
                    for job_id in ids:
                        got = (await stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=60)).job
                        problems.extend(job_problems(got, f"GetJob {job_id}"))
                        n += 1
                return n

            submitted = await asyncio.gather(*(
                stub.SubmitJob(pb.SubmitJobRequest(definition_toml=TOML.format(
                    i=i, i_mod=i % 5, fail=1 if i % 7 == 0 else 0)), timeout=60)
                for i in range(JOBS)))
            ids = [r.job.job_id for r in submitted]
            getters = [asyncio.create_task(getter(ids[k::GETTERS])) for k in range(GETTERS)]
            watched = await asyncio.wait_for(asyncio.gather(*(watch(j) for j in ids)), DEADLINE)
            all_done.set()
            gets = await asyncio.gather(*getters)
            assert sum(gets) >= GETTERS  # the getters really ran beside the jobs
            for job_id, seen in zip(ids, watched, strict=True):
                final = (await stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=60)).job
                finals[job_id] = final
                if seen != final:
                    problems.append(f"job {job_id}: snapshot + events != GetJob")
    finally:
        server.stop()

    rows = child_rows(db_url if db_url.startswith("postgresql") else Path(db_url[len("sqlite:///"):]))
    files = sum(FILES.values())
    for job_id, job in finals.items():
        problems.extend(job_problems(job, f"final {job_id}"))
        problems.extend(rows_problems(job, rows, f"final {job_id}"))
        steps = {s.name: s for s in job.steps}
        scan = steps["scan"]
        if (scan.status, scan.document_count, scan.children.completed) != (
                pb.STEP_STATUS_COMPLETED, files, files):
            problems.append(f"final {job_id}: scan {pb.StepStatus.Name(scan.status)} "
                            f"documents={scan.document_count} completed={scan.children.completed}, "
                            f"{files} files")
        if steps["sum"].children.completed != files:
            problems.append(f"final {job_id}: summarize completed {steps['sum'].children.completed}")
        expected = pb.STEP_STATUS_COMPLETED  # cmds tolerates its one failing command
        if steps["cmds"].status != expected or steps["cmds"].children.failed != 1:
            problems.append(f"final {job_id}: cmds {steps['cmds']}")
    assert len(finals) == JOBS
    assert not problems, f"{len(problems)} inconsistencies:\n" + "\n".join(problems[:40])
