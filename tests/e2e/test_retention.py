"""Deleting jobs: DeleteJob now, and --keep-jobs-days retention; readers get NOT_FOUND and
the WatchJobs feed tells its watchers."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator

DEADLINE = 60


class Feed:
    """A WatchJobs stream read on a thread: the job ids it says were deleted, in order."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.deleted: queue.Queue[str] = queue.Queue()
        self.stream = pb_grpc.OrchestratorServiceStub(self.channel).WatchJobs(
            pb.WatchJobsRequest(), timeout=DEADLINE * 2)
        self.snapshot = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.snapshot.wait(DEADLINE), "no WatchJobs snapshot"

    def _read(self) -> None:
        try:
            for msg in self.stream:
                if msg.WhichOneof("kind") == "snapshot":
                    self.snapshot.set()
                elif msg.WhichOneof("kind") == "job_deleted":
                    self.deleted.put(msg.job_deleted)
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self.stream.cancel()
        self.channel.close()


def run(stub: pb_grpc.OrchestratorServiceStub, command: str) -> pb.Job:
    job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
        f'name = "r"\n[steps.s]\ntype = "shell"\ncommands = ["{command}"]\n')),
        timeout=DEADLINE).job
    for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE):
        pass
    return job


def code_of(call, *args) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        result = call(*args, timeout=DEADLINE)
        if hasattr(result, "__next__"):
            list(result)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_delete_job_removes_a_finished_job_and_tells_the_feed(tmp_path: Path) -> None:
    orch = Orchestrator(f"sqlite:///{tmp_path / 'd.db'}", workspace=tmp_path)
    feed = Feed(orch.target)
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            done = run(stub, "echo kept in the log")
            slow = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                'name = "slow"\n[steps.s]\ntype = "shell"\ncommands = ["sleep 30"]\n')),
                timeout=DEADLINE).job
            with pytest.raises(grpc.RpcError) as err:
                stub.DeleteJob(pb.DeleteJobRequest(job_id=slow.job_id), timeout=DEADLINE)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "cancel it first" in err.value.details()
            got = stub.DeleteJob(pb.DeleteJobRequest(job_id=done.job_id[:8]), timeout=DEADLINE)
            assert got.job_id == done.job_id  # a prefix names it, the answer has the full id
            assert feed.deleted.get(timeout=DEADLINE) == done.job_id
            for call, req in ((stub.GetJob, pb.GetJobRequest(job_id=done.job_id)),
                              (stub.WatchJob, pb.WatchJobRequest(job_id=done.job_id)),
                              (stub.WatchLogs, pb.WatchLogsRequest(job_id=done.job_id, step="s")),
                              (stub.DeleteJob, pb.DeleteJobRequest(job_id=done.job_id))):
                assert code_of(call, req) == grpc.StatusCode.NOT_FOUND, call
            listed = stub.ListJobs(pb.ListJobsRequest(), timeout=DEADLINE).jobs
            assert [j.job_id for j in listed] == [slow.job_id]
            stub.CancelJob(pb.CancelJobRequest(job_id=slow.job_id), timeout=DEADLINE)
    finally:
        feed.close()
        orch.stop()


def test_retention_deletes_old_finished_jobs_and_keeps_young_ones(tmp_path: Path) -> None:
    keep_s = 8.64  # --keep-jobs-days 0.0001
    orch = Orchestrator(f"sqlite:///{tmp_path / 'k.db'}", workspace=tmp_path, extra=[
        "--keep-jobs-days", "0.0001", "--retention-interval", "0.2"])
    feed = Feed(orch.target)
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            old = run(stub, "true")
            young = run(stub, "sleep 3")  # finishes 3 s or more after the old one
            assert feed.deleted.get(timeout=DEADLINE) == old.job_id
            deleted_at = time.time()
            young_now = stub.GetJob(pb.GetJobRequest(job_id=young.job_id), timeout=DEADLINE).job
            age = deleted_at - young_now.finished_at.ToMicroseconds() / 1e6
            assert age < keep_s  # younger than the limit: still there
            assert code_of(stub.GetJob, pb.GetJobRequest(job_id=old.job_id)) == \
                grpc.StatusCode.NOT_FOUND
            # And the young one goes too, once it is old enough.
            assert feed.deleted.get(timeout=DEADLINE) == young.job_id
    finally:
        feed.close()
        orch.stop()
