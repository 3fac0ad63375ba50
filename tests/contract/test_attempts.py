"""Each attempt's outcome is on the wire (Step.attempts), as the orchestrator decided it:
a reader draws attempts from it and derives nothing."""

from __future__ import annotations

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.contract.helpers import events, finish, shell, step, submit, toml, watch


def test_a_retried_steps_attempts_are_read_back_through_getjob_and_watchjob(
        stub: pb_grpc.OrchestratorServiceStub) -> None:
    job = submit(stub, toml("stop", shell(
        "flaky", "[ $STEPWATCH_ATTEMPT -ge 2 ] || { echo boom >&2; exit 3; }",
        extra="max_attempts = 2")))
    final = finish(stub, job.job_id)
    assert final.status == pb.JOB_STATUS_COMPLETED
    s = step(final, "flaky")
    first, second = s.attempts
    assert (first.attempt, first.status) == (1, pb.STEP_STATUS_FAILED)
    assert first.failure.reason == pb.FAILURE_REASON_CHILD_FAILURES_EXCEEDED
    assert "boom" in first.failure.message
    assert (second.attempt, second.status) == (2, pb.STEP_STATUS_COMPLETED)
    assert not second.HasField("failure")
    assert first.started_at.ToMicroseconds() <= first.finished_at.ToMicroseconds() \
        <= second.started_at.ToMicroseconds() <= second.finished_at.ToMicroseconds()
    assert second.finished_at == s.finished_at and first.started_at == s.started_at
    # The stream says the same, as it happened: none, attempt 1 RUNNING, then closed FAILED as
    # attempt 2 began, then attempt 2 COMPLETED; the last step event equals GetJob's step.
    seen = [e.step_changed for e in events(watch(stub, job.job_id, after_seq=1))
            if e.HasField("step_changed") and e.step_changed.name == "flaky"]
    shapes = []
    for e in seen:
        shape = [(a.attempt, a.status) for a in e.attempts]
        if not shapes or shapes[-1] != shape:
            shapes.append(shape)
    assert shapes == [[],  # PENDING: no attempt yet
                      [(1, pb.STEP_STATUS_RUNNING)],
                      [(1, pb.STEP_STATUS_FAILED), (2, pb.STEP_STATUS_RUNNING)],
                      [(1, pb.STEP_STATUS_FAILED), (2, pb.STEP_STATUS_COMPLETED)]]
    assert seen[-1] == s


def test_a_step_that_never_ran_has_no_attempts(stub: pb_grpc.OrchestratorServiceStub) -> None:
    job = submit(stub, toml("stop", shell("bad", "exit 4"),
                            shell("after", "true", extra='depends = ["bad"]')))
    final = finish(stub, job.job_id)
    assert step(final, "after").status == pb.STEP_STATUS_SKIPPED
    assert list(step(final, "after").attempts) == []
    [only] = step(final, "bad").attempts
    assert only.status == pb.STEP_STATUS_FAILED and only.HasField("finished_at")
