"""FAILURE_REASON_ORCHESTRATOR_RESTARTED, seen from outside.

A conformance suite cannot kill somebody else's server, so this one test always
starts its own `python -m orchestrator_service` (also under --target), SIGKILLs it
while a step runs, starts it again on the same database, and reads the outcome
through the generated stubs only.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator, free_port, kill_process_groups_matching

from .helpers import DEADLINE, events, shell, step, toml


def test_a_step_interrupted_by_a_dead_server_fails_with_orchestrator_restarted(tmp_path: Path,
                                                                               db_url: str) -> None:
    marker = f"stepwatch-contract-{uuid.uuid4().hex}"
    db, port = db_url, free_port()
    text = toml("continue", shell("long", f"sleep 60; echo {marker}"),
                shell("after", "true", extra='depends = ["long"]'))
    server = Orchestrator(db, port=port)
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=text), timeout=DEADLINE).job
            seen = 0
            for msg in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE):
                if msg.WhichOneof("kind") == "event":
                    seen = msg.event.seq
                    if msg.event.step_changed.children.running == 1:
                        break
        server.stop(signal.SIGKILL)
        server = Orchestrator(db, port=port)
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            rest = list(stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id, after_seq=seen),
                                      timeout=DEADLINE))
            final = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job
    finally:
        server.stop()
        kill_process_groups_matching(marker)
    assert [e.seq for e in events(rest)] == list(range(seen + 1, final.head_seq + 1))
    long = step(final, "long")
    assert (long.status, long.failure.reason) == (pb.STEP_STATUS_FAILED,
                                                  pb.FAILURE_REASON_ORCHESTRATOR_RESTARTED)
    assert long.tolerated and long.failure.message
    assert step(final, "after").status == pb.STEP_STATUS_SKIPPED
    assert final.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES
