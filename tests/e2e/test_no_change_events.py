"""No event without a change: a step that prints a line every 50 ms for 10 s appends a
handful of events (its transitions), not one per flush of its output, and no two
consecutive events of a step carry identical bytes. Its output is all in its log."""

from __future__ import annotations

from pathlib import Path

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator

DEADLINE = 60
LINES = 200  # one every 50 ms: 10 s


def test_a_step_printing_for_10_s_appends_events_only_when_its_state_changes(
        tmp_path: Path) -> None:
    server = Orchestrator(f"sqlite:///{tmp_path / 'quiet.db'}", workspace=tmp_path)
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            toml = ('name = "chatty"\n[steps.talk]\ntype = "shell"\n'
                    f'commands = ["for i in $(seq {LINES}); do echo line $i; sleep 0.05; done"]\n'
                    '[steps.after]\ntype = "shell"\ncommands = ["true"]\ndepends = ["talk"]\n')
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=DEADLINE).job
            events = [m.event for m in stub.WatchJob(
                pb.WatchJobRequest(job_id=job.job_id, after_seq=1), timeout=DEADLINE)
                if m.WhichOneof("kind") == "event"]
            final = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job
            text = "".join(r.chunk.text for r in stub.WatchLogs(
                pb.WatchLogsRequest(job_id=job.job_id, step="talk"), timeout=DEADLINE)
                if r.WhichOneof("kind") == "chunk")
    finally:
        server.stop()
    assert final.status == pb.JOB_STATUS_COMPLETED
    assert text.splitlines() == [f"line {i}" for i in range(1, LINES + 1)]
    print(f"\n{LINES} lines over 10 s: head_seq {final.head_seq}")
    assert final.head_seq <= 20, [e.WhichOneof("change") for e in events]
    last: dict[str, bytes] = {}
    for e in events:
        if e.HasField("step_changed"):
            body = e.step_changed.SerializeToString(deterministic=True)
            assert last.get(e.step_changed.step_id) != body, f"seq {e.seq} repeats its step"
            last[e.step_changed.step_id] = body
