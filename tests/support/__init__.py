"""Helpers every kind of test shares: waiting on a condition with a deadline, submitting a
job and following it to its end, the terminal statuses. (Processes: tests/procs.py;
PostgreSQL: tests/postgres.py; faults: tests/faultproxy.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

__all__ = ["DEADLINE", "TERMINAL", "eventually", "finish", "finish_at", "submit", "submit_at",
           "until"]

DEADLINE = 60.0
TERMINAL = frozenset({pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_COMPLETED_WITH_FAILURES,
                      pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED})


def until(check: Callable[[], object], what: str, timeout: float = DEADLINE) -> float:
    """Wait for ``check()`` to be true, polling another process's state, within a deadline;
    the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)  # a poll of another process, with a deadline
    return time.monotonic() - start


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait for a condition with a deadline (re-checked as the event loop runs): ``until``
    for a test on the event loop."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        await asyncio.sleep(0.02)


def submit(stub: pb_grpc.OrchestratorServiceStub, toml: str, request_id: str = "",
           timeout: float = DEADLINE) -> pb.Job:
    return stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml, request_id=request_id),
                          timeout=timeout).job


def finish(stub: pb_grpc.OrchestratorServiceStub, job_id: str,
           timeout: float = DEADLINE) -> pb.Job:
    """Follow the job's stream to its end; the job as GetJob then answers."""
    for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=timeout):
        pass
    return stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=timeout).job


def submit_at(target: str, toml: str) -> pb.Job:
    with grpc.insecure_channel(target) as ch:
        return submit(pb_grpc.OrchestratorServiceStub(ch), toml)


def finish_at(target: str, job_id: str) -> pb.Job:
    with grpc.insecure_channel(target) as ch:
        return finish(pb_grpc.OrchestratorServiceStub(ch), job_id)
