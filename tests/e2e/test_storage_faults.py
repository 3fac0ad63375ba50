"""Storage faults on a real small tmpfs: visible (NOT_SERVING, UNAVAILABLE), nothing lost or mislabelled.

Disk full: running jobs wait, commands answer
UNAVAILABLE "storage unavailable: ...", health is NOT_SERVING; when the fault
clears, health is SERVING again and the jobs finish as they would have. The
database file deleted under the server: noticed, writes refused, NOT_SERVING.
(A read-only filesystem cannot be made so under a running server: Linux refuses to
remount a filesystem read-only while files are open for writing. The read-only
error itself is injected in tests/engine/test_runner_errors.py.)
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator
from tests.support import until

DEADLINE = 60
SLOW_JOB = ('name = "slow"\n[steps.a]\ntype = "shell"\nconcurrency = 1\n'
            'commands = [' + ", ".join(['"sleep 0.3"'] * 8) + ']\n'
            '[steps.b]\ntype = "shell"\ncommands = ["true"]\ndepends = ["a"]\n')
QUICK_JOB = 'name = "quick"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MiB tmpfs (the test fails, not skips, when it cannot mount one)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def health(ch: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(ch).Check(
        health_pb2.HealthCheckRequest(service="stepwatch.v1.OrchestratorService"), timeout=10).status


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    # Unbuffered: a write that finds the disk full raises there, and closing has nothing left
    # to flush (a buffered file raised ENOSPC again on close, now and then).
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def step_running(stub: pb_grpc.OrchestratorServiceStub, job_id: str) -> bool:
    job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job
    return job.steps[0].children.completed >= 1


def finish(stub: pb_grpc.OrchestratorServiceStub, job_id: str) -> pb.Job:
    for _msg in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=DEADLINE):
        pass
    return stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job


def refused_for_storage(stub: pb_grpc.OrchestratorServiceStub) -> str:
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitJob(pb.SubmitJobRequest(definition_toml=QUICK_JOB), timeout=20)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    return err.value.details()


def check_whole(job: pb.Job) -> None:
    assert job.status == pb.JOB_STATUS_COMPLETED, job
    assert all(s.status == pb.STEP_STATUS_COMPLETED and s.attempt == 1 for s in job.steps)
    assert job.steps[0].children.completed == 8


def test_a_full_disk_is_visible_and_jobs_finish_after_it(disk: Path, tmp_path: Path) -> None:
    server = Orchestrator(f"sqlite:///{disk / 'sw.db'}", workspace=tmp_path)
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=SLOW_JOB)).job
            until(lambda: step_running(stub, job.job_id), "the step to be under way")
            filler = fill(disk)
            until(lambda: health(ch) == NOT_SERVING, "NOT_SERVING")
            assert "storage unavailable" in refused_for_storage(stub)
            during = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=10).job
            assert during.status == pb.JOB_STATUS_RUNNING  # waiting, not failed
            filler.unlink()
            until(lambda: health(ch) == SERVING, "SERVING again")
            check_whole(finish(stub, job.job_id))
            after = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=QUICK_JOB)).job
            assert finish(stub, after.job_id).status == pb.JOB_STATUS_COMPLETED
    finally:
        server.stop()


def test_a_deleted_database_file_stops_writes(tmp_path: Path) -> None:
    db = tmp_path / "gone.db"
    server = Orchestrator(f"sqlite:///{db}", workspace=tmp_path)
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=QUICK_JOB)).job
            assert finish(stub, job.job_id).status == pb.JOB_STATUS_COMPLETED
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            until(lambda: health(ch) == NOT_SERVING, "NOT_SERVING")
            assert "deleted or replaced" in refused_for_storage(stub)
            with pytest.raises(grpc.RpcError) as err:
                stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        until(lambda: "ERROR" in server.output and str(db) in server.output, "the error in the log")
    finally:
        server.stop()
    assert not db.exists()  # nothing was written to a new file behind the operator's back


def test_health_watch_streams_serving_then_not_serving_when_storage_fails(tmp_path: Path) -> None:
    """grpc.health.v1.Health/Watch, as a Kubernetes-style probe uses it: a stream of statuses."""
    db = tmp_path / "watched.db"
    server = Orchestrator(f"sqlite:///{db}", workspace=tmp_path)
    try:
        with grpc.insecure_channel(server.target) as ch:
            stream = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service="stepwatch.v1.OrchestratorService"),
                timeout=DEADLINE)
            assert next(stream).status == SERVING
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            assert next(stream).status == NOT_SERVING
            stream.cancel()
    finally:
        server.stop()


@pytest.mark.serial  # timed: SERVING within 1 s: run alone
def test_an_idle_server_is_serving_within_1_s_of_a_full_disk_freed(disk: Path,
                                                                   tmp_path: Path) -> None:
    """Nothing writes on an idle server: its probe, not a job's write, notices space is back."""
    server = Orchestrator(f"sqlite:///{disk / 'sw.db'}", workspace=tmp_path)
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            filler = fill(disk)
            assert "storage unavailable" in refused_for_storage(stub)
            until(lambda: health(ch) == NOT_SERVING, "NOT_SERVING")
            filler.unlink()
            freed = time.monotonic()
            until(lambda: health(ch) == SERVING, "SERVING again", timeout=10)
            took = time.monotonic() - freed
            print(f"\nSERVING {took:.2f} s after the disk was freed")
            assert took <= 1.0, took
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=QUICK_JOB)).job
            assert finish(stub, job.job_id).status == pb.JOB_STATUS_COMPLETED
    finally:
        server.stop()
