"""SIGTERM: health stops serving, open watch streams end with UNAVAILABLE, the process exits 0,
and the interrupted job goes on at the next start."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator, free_port


def test_sigterm_ends_watch_streams_cleanly(tmp_path: Path, db_url: str) -> None:
    db, port = db_url, free_port()
    flag = tmp_path / "once"
    toml = (f'name = "g"\n[steps.s]\ntype = "shell"\nmax_attempts = 2\n'
            f'commands = ["test -f {flag} || {{ touch {flag}; sleep 60; }}"]\n')
    server = Orchestrator(db, port=port)
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=30).job
            stream = stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=60)
            last = 0
            for msg in stream:
                if msg.WhichOneof("kind") == "event":
                    last = msg.event.seq
                    if msg.event.step_changed.children.running == 1:
                        break
            started = time.monotonic()
            server.popen.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as info:
                for _ in stream:
                    pass
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "resume with after_seq" in info.value.details()
        assert server.popen.wait(30) == 0
        assert time.monotonic() - started < 20
    finally:
        server.stop()

    server = Orchestrator(db, port=port)
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            rest = list(stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id, after_seq=last),
                                      timeout=60))
            final = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=30).job
    finally:
        server.stop()
    assert [m.event.seq for m in rest] == list(range(last + 1, final.head_seq + 1))
    assert final.status == pb.JOB_STATUS_COMPLETED and final.steps[0].attempt == 2
    assert final.steps[0].status == pb.STEP_STATUS_COMPLETED
