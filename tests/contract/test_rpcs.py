"""Every RPC's happy path and every error code the proto promises."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stepwatch.v1 import orchestrator_pb2 as pb

from .conftest import Server
from .helpers import DEADLINE, bad_request_fields, finish, shell, step, submit, toml, watch


def test_health_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "stepwatch.v1.OrchestratorService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_list_job_definitions(stub, server: Server) -> None:
    defs = stub.ListJobDefinitions(pb.ListJobDefinitionsRequest(), timeout=DEADLINE).definitions
    by_name = {d.name: d for d in defs}
    assert [d.name for d in defs] == sorted(by_name)
    assessed = by_name["codebase_assess"]
    assert assessed.on_step_failure == "continue"
    assert list(assessed.step_names)[:3] == ["import_files", "summarize", "architecture_notes"]


def test_submit_by_name_returns_the_pending_job_whole(stub) -> None:
    job = stub.SubmitJob(pb.SubmitJobRequest(definition_name="codebase_assess"),
                         timeout=DEADLINE).job
    assert job.job_id and job.definition_name == "codebase_assess"
    assert job.status == pb.JOB_STATUS_PENDING
    assert {s.status for s in job.steps} == {pb.STEP_STATUS_PENDING}
    assert [s.index for s in job.steps] == list(range(len(job.steps)))
    assert job.step_counts.total == job.step_counts.pending == len(job.steps)
    assert job.head_seq >= 1 and job.created_at.seconds > 0
    done = finish(stub, job.job_id)
    assert done.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES
    notes = step(done, "architecture_notes")
    assert notes.status == pb.STEP_STATUS_FAILED and notes.tolerated
    assert notes.failure.message == "no documents found matching tags: ['architecture']"


def test_submit_inline_and_get_job(stub) -> None:
    job = submit(stub, toml("stop", shell("a", "true"), shell("b", "true", extra='depends = ["a"]')))
    done = finish(stub, job.job_id)
    got = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job
    assert got == done
    assert got.status == pb.JOB_STATUS_COMPLETED
    assert list(step(got, "b").depends_on) == ["a"]
    assert got.step_counts.completed == 2 and got.finished_at.seconds > 0


def test_list_jobs_newest_first_paged_and_filtered(stub) -> None:
    ids = [submit(stub, toml("stop", shell("a", "true"))).job_id for _ in range(3)]
    for job_id in ids:
        finish(stub, job_id)
    seen: list[str] = []
    token = ""
    while len(seen) < 3:
        page = stub.ListJobs(pb.ListJobsRequest(page_size=2, page_token=token), timeout=DEADLINE)
        assert len(page.jobs) <= 2 and all(not j.steps for j in page.jobs)  # headers only
        seen += [j.job_id for j in page.jobs]
        token = page.next_page_token
        assert token, "more jobs exist, so the page must offer a next token"
    assert seen[:3] == ids[::-1]
    completed = stub.ListJobs(pb.ListJobsRequest(page_size=1000, status=pb.JOB_STATUS_COMPLETED),
                              timeout=DEADLINE).jobs
    assert set(ids) <= {j.job_id for j in completed}
    assert {j.status for j in completed} == {pb.JOB_STATUS_COMPLETED}


def test_cancel_a_running_job(stub) -> None:
    job = submit(stub, toml("stop", shell("slow", "sleep 30"),
                            shell("later", "true", extra='depends = ["slow"]')))
    for msg in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE):
        if msg.WhichOneof("kind") == "event" and msg.event.step_changed.children.running == 1:
            break
    cancelled = stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id), timeout=DEADLINE).job
    assert cancelled.status == pb.JOB_STATUS_CANCELLED
    assert cancelled.failure.reason == pb.FAILURE_REASON_CANCELLED_BY_USER
    for s in cancelled.steps:
        assert s.status == pb.STEP_STATUS_CANCELLED
        assert s.failure.reason == pb.FAILURE_REASON_CANCELLED_BY_USER


def code_of(call, request) -> tuple[grpc.StatusCode, list[str], str]:
    with pytest.raises(grpc.RpcError) as info:
        result = call(request, timeout=DEADLINE)
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            list(result)
    err = info.value
    return err.code(), bad_request_fields(err), err.details()


BAD_TOML = [
    ("name = ", "definition_toml"),
    ('name = "x"\n[steps.a]\ntype = "nope"\n', "steps.a.type"),
    ('name = "x"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\ndepends = ["a"]\n', "steps.a.depends"),
    ('name = "x"\n[steps.a]\ntype = "summarize"\ndepends = ["b"]\n[steps.b]\ntype = "summarize"\n'
     'depends = ["a"]\n', "steps.a.depends"),
    ('name = "x"\n[steps.a]\ntype = "summarize"\ndepends = ["ghost"]\n', "steps.a.depends"),
    ('name = "x"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\nmax_attempts = 0\n',
     "steps.a.max_attempts"),
    ('name = "x"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\nflavour = 1\n', "steps.a.flavour"),
]


@pytest.mark.parametrize(("text", "field"), BAD_TOML)
def test_submit_invalid_definition_is_invalid_argument_with_bad_request(stub, text, field) -> None:
    code, fields, details = code_of(stub.SubmitJob, pb.SubmitJobRequest(definition_toml=text))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in fields, (fields, details)


def test_errors_by_rpc(stub) -> None:
    job = finish(stub, submit(stub, toml("stop", shell("a", "true"))).job_id)
    ghost = "0" * 32
    cases = [
        (stub.SubmitJob, pb.SubmitJobRequest(), grpc.StatusCode.INVALID_ARGUMENT, ["source"]),
        (stub.SubmitJob, pb.SubmitJobRequest(definition_name="no-such-definition"),
         grpc.StatusCode.NOT_FOUND, []),
        (stub.GetJob, pb.GetJobRequest(), grpc.StatusCode.INVALID_ARGUMENT, ["job_id"]),
        (stub.GetJob, pb.GetJobRequest(job_id=ghost), grpc.StatusCode.NOT_FOUND, []),
        (stub.ListJobs, pb.ListJobsRequest(page_token="garbage!"), grpc.StatusCode.INVALID_ARGUMENT,
         ["page_token"]),
        (stub.ListJobs, pb.ListJobsRequest(page_size=5000), grpc.StatusCode.INVALID_ARGUMENT,
         ["page_size"]),
        (stub.ListJobs, pb.ListJobsRequest(status=99), grpc.StatusCode.INVALID_ARGUMENT, ["status"]),
        (stub.CancelJob, pb.CancelJobRequest(), grpc.StatusCode.INVALID_ARGUMENT, ["job_id"]),
        (stub.CancelJob, pb.CancelJobRequest(job_id=ghost), grpc.StatusCode.NOT_FOUND, []),
        (stub.CancelJob, pb.CancelJobRequest(job_id=job.job_id),
         grpc.StatusCode.FAILED_PRECONDITION, []),
        (stub.WatchJob, pb.WatchJobRequest(), grpc.StatusCode.INVALID_ARGUMENT, ["job_id"]),
        (stub.WatchJob, pb.WatchJobRequest(job_id=ghost), grpc.StatusCode.NOT_FOUND, []),
        (stub.WatchJob, pb.WatchJobRequest(job_id=job.job_id, after_seq=job.head_seq + 1),
         grpc.StatusCode.OUT_OF_RANGE, []),
        (stub.WatchJobs, pb.WatchJobsRequest(limit=5000), grpc.StatusCode.INVALID_ARGUMENT, ["limit"]),
    ]
    for call, request, code, fields in cases:
        got_code, got_fields, details = code_of(call, request)
        assert (got_code, got_fields) == (code, fields), (call, request, details)
        assert details, "every error carries a message a person can act on"
    # Bad input lost nothing: the finished job is exactly as it was.
    assert stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job == job
    assert watch(stub, job.job_id, after_seq=job.head_seq) == []
