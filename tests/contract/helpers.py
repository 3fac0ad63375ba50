"""Small black-box helpers: submit inline TOML, read whole streams with a deadline."""

from __future__ import annotations

import uuid

import grpc
from google.rpc import error_details_pb2, status_pb2

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

DEADLINE = 60.0
TERMINAL_JOB = {pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_COMPLETED_WITH_FAILURES,
                pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED}
TERMINAL_STEP = {pb.STEP_STATUS_COMPLETED, pb.STEP_STATUS_FAILED, pb.STEP_STATUS_SKIPPED,
                 pb.STEP_STATUS_CANCELLED}


def toml(policy: str, *steps: str) -> str:
    # A unique name keeps runs apart on a shared (external) server.
    return (f'name = "contract-{uuid.uuid4().hex[:8]}"\n[policy]\non_step_failure = "{policy}"\n'
            + "\n".join(steps))


def shell(name: str, *commands: str, extra: str = "") -> str:
    cmds = ", ".join(f'"{c}"' for c in commands)
    return f'[steps.{name}]\ntype = "shell"\ncommands = [{cmds}]\n{extra}\n'


def submit(stub: pb_grpc.OrchestratorServiceStub, text: str) -> pb.Job:
    return stub.SubmitJob(pb.SubmitJobRequest(definition_toml=text), timeout=DEADLINE).job


def watch(stub: pb_grpc.OrchestratorServiceStub, job_id: str, after_seq: int = 0,
          timeout: float = DEADLINE) -> list[pb.WatchJobResponse]:
    """The whole stream until the server ends it with OK (raises on any other end)."""
    return list(stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_seq=after_seq),
                              timeout=timeout))


def finish(stub: pb_grpc.OrchestratorServiceStub, job_id: str) -> pb.Job:
    """Follow the job until its stream ends, then read it."""
    watch(stub, job_id)
    job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=DEADLINE).job
    assert job.status in TERMINAL_JOB
    return job


def step(job: pb.Job, name: str) -> pb.Step:
    return next(s for s in job.steps if s.name == name)


def events(stream: list[pb.WatchJobResponse]) -> list[pb.JobEvent]:
    return [m.event for m in stream if m.WhichOneof("kind") == "event"]


def apply(job: pb.Job, event: pb.JobEvent) -> pb.Job:
    """Replace what the event carries: the contract's own definition of applying."""
    out = pb.Job()
    if event.WhichOneof("change") == "job_changed":
        out.CopyFrom(event.job_changed)
        out.steps.extend(job.steps)
    else:
        out.CopyFrom(job)
        for s in out.steps:
            if s.step_id == event.step_changed.step_id:
                s.CopyFrom(event.step_changed)
    out.head_seq = event.seq
    return out


def bad_request_fields(err: grpc.RpcError) -> list[str]:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                br = error_details_pb2.BadRequest()
                if detail.Unpack(br):
                    return [v.field for v in br.field_violations]
    return []
