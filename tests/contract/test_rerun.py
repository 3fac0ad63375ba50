"""RerunJob: a new job from the same definition; failed-only carries COMPLETED steps over."""

from __future__ import annotations

import uuid

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

DEADLINE = 60


def finish(stub: pb_grpc.OrchestratorServiceStub, job_id: str) -> tuple[pb.Job, list[pb.JobEvent]]:
    events = [r.event for r in stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_seq=1),
                                             timeout=DEADLINE) if r.WhichOneof("kind") == "event"]
    return stub.GetJob(pb.GetJobRequest(job_id=job_id)).job, events


@pytest.fixture
def flaky_job(stub: pb_grpc.OrchestratorServiceStub) -> pb.Job:
    flag = f"/tmp/stepwatch-rerun-{uuid.uuid4().hex}"
    made = f"rerun-{uuid.uuid4().hex[:12]}.txt"  # a document of its own, whatever the database
    toml = f'''
name = "rerun_me"
[policy]
on_step_failure = "continue"
[steps.make]
type = "shell"
commands = ["printf x > {made}"]
[steps.scan]
type = "scan_files"
include = ["{made}"]
depends = ["make"]
[steps.flaky]
type = "shell"
commands = ["test -e {flag} || {{ touch {flag}; exit 1; }}"]
[steps.after_scan]
type = "shell"
commands = ["true"]
depends = ["scan"]
[steps.after_flaky]
type = "shell"
commands = ["true"]
depends = ["flaky"]
'''
    job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml)).job
    done, _ = finish(stub, job.job_id)
    statuses = {s.name: s.status for s in done.steps}
    assert statuses == {"make": pb.STEP_STATUS_COMPLETED, "scan": pb.STEP_STATUS_COMPLETED,
                        "flaky": pb.STEP_STATUS_FAILED,
                        "after_scan": pb.STEP_STATUS_COMPLETED,
                        "after_flaky": pb.STEP_STATUS_SKIPPED}
    return done


def test_failed_only_rerun_carries_completed_steps_over(stub: pb_grpc.OrchestratorServiceStub,
                                                        flaky_job: pb.Job) -> None:
    rerun = stub.RerunJob(pb.RerunJobRequest(job_id=flaky_job.job_id, failed_only=True)).job
    assert rerun.job_id != flaky_job.job_id and rerun.rerun_of == flaky_job.job_id
    done, events = finish(stub, rerun.job_id)
    steps = {s.name: s for s in done.steps}
    assert done.status == pb.JOB_STATUS_COMPLETED
    assert all(s.status == pb.STEP_STATUS_COMPLETED for s in done.steps)
    assert steps["make"].carried_from == steps["scan"].carried_from == \
        steps["after_scan"].carried_from == flaky_job.job_id
    assert steps["flaky"].carried_from == steps["after_flaky"].carried_from == ""
    original = {s.name: s for s in flaky_job.steps}
    assert steps["scan"].children == original["scan"].children  # as the original counted them
    ran = {e.step_changed.name for e in events if e.HasField("step_changed")
           and e.step_changed.status == pb.STEP_STATUS_RUNNING}
    assert ran == {"flaky", "after_flaky"}  # the carried steps did not run again
    docs = stub.ListDocuments(pb.ListDocumentsRequest(job_id=rerun.job_id)).documents
    first = stub.ListDocuments(pb.ListDocumentsRequest(job_id=flaky_job.job_id)).documents
    assert [d.path for d in docs] == [d.path for d in first] and docs


def test_a_whole_rerun_runs_every_step_again(stub: pb_grpc.OrchestratorServiceStub,
                                             flaky_job: pb.Job) -> None:
    rerun = stub.RerunJob(pb.RerunJobRequest(job_id=flaky_job.job_id[:8])).job
    done, events = finish(stub, rerun.job_id)
    assert done.rerun_of == flaky_job.job_id and done.status == pb.JOB_STATUS_COMPLETED
    assert all(s.carried_from == "" for s in done.steps)
    ran = {e.step_changed.name for e in events if e.HasField("step_changed")
           and e.step_changed.status == pb.STEP_STATUS_RUNNING}
    assert ran == {"make", "scan", "flaky", "after_scan", "after_flaky"}


def test_rerun_errors(stub: pb_grpc.OrchestratorServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.RerunJob(pb.RerunJobRequest(job_id="0" * 32))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    running = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
        'name = "slow"\n[steps.s]\ntype = "shell"\ncommands = ["sleep 30"]\n'))).job
    try:
        with pytest.raises(grpc.RpcError) as err:
            stub.RerunJob(pb.RerunJobRequest(job_id=running.job_id))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "only a finished job can be rerun" in err.value.details()
    finally:
        stub.CancelJob(pb.CancelJobRequest(job_id=running.job_id))
