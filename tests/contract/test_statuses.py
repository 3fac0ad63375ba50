"""Scenarios that make every StepStatus, JobStatus and FailureReason value appear,
each asserted where the rules table says it must."""

from __future__ import annotations

import uuid

from stepwatch.v1 import orchestrator_pb2 as pb

from .helpers import DEADLINE, events, finish, shell, step, submit, toml, watch


def seen_values(stream: list[pb.WatchJobResponse]) -> tuple[set[int], set[int]]:
    steps: set[int] = set()
    jobs: set[int] = set()
    for m in stream:
        if m.WhichOneof("kind") == "snapshot":
            jobs.add(m.snapshot.job.status)
            steps |= {s.status for s in m.snapshot.job.steps}
    for e in events(stream):
        if e.WhichOneof("change") == "step_changed":
            steps.add(e.step_changed.status)
        else:
            jobs.add(e.job_changed.status)
    return steps, jobs


def test_policy_continue_scenario(stub) -> None:
    """COMPLETED, FAILED (INIT_FAILED, CHILD_FAILURES_EXCEEDED, TIMEOUT, EXECUTION_FAILED),
    SKIPPED (DEPENDENCY_FAILED); the job COMPLETED_WITH_FAILURES; PENDING and RUNNING on the way."""
    job = submit(stub, toml(
        "continue",
        shell("ok", "true", "exit 1", extra="max_child_failures = 1"),
        '[steps.notes]\ntype = "filter_tags"\ntags = ["architecture"]\n',
        shell("after_notes", "true", extra='depends = ["notes"]'),
        shell("many", "exit 1", "exit 2", extra="max_child_failures = 1"),
        shell("slow", "sleep 30", extra="timeout = 0.5"),
        shell("broken", "stepwatch-no-such-command", extra="max_child_failures = 3"),
    ))
    assert job.status == pb.JOB_STATUS_PENDING
    assert {s.status for s in job.steps} == {pb.STEP_STATUS_PENDING}
    stream = watch(stub, job.job_id)
    steps_seen, jobs_seen = seen_values(stream)
    assert pb.STEP_STATUS_RUNNING in steps_seen and pb.JOB_STATUS_RUNNING in jobs_seen
    assert pb.STEP_STATUS_UNSPECIFIED not in steps_seen and pb.JOB_STATUS_UNSPECIFIED not in jobs_seen

    done = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job
    assert done.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES
    ok = step(done, "ok")
    assert ok.status == pb.STEP_STATUS_COMPLETED and ok.children.failed == 1
    assert not ok.HasField("failure")
    expected = {
        "notes": (pb.STEP_STATUS_FAILED, pb.FAILURE_REASON_INIT_FAILED),
        "after_notes": (pb.STEP_STATUS_SKIPPED, pb.FAILURE_REASON_DEPENDENCY_FAILED),
        "many": (pb.STEP_STATUS_FAILED, pb.FAILURE_REASON_CHILD_FAILURES_EXCEEDED),
        "slow": (pb.STEP_STATUS_FAILED, pb.FAILURE_REASON_TIMEOUT),
        "broken": (pb.STEP_STATUS_FAILED, pb.FAILURE_REASON_EXECUTION_FAILED),
    }
    for name, (status, reason) in expected.items():
        s = step(done, name)
        assert (s.status, s.failure.reason) == (status, reason), name
        assert s.failure.message, name
        assert s.tolerated == (status == pb.STEP_STATUS_FAILED), name
    assert step(done, "notes").failure.message == "no documents found matching tags: ['architecture']"
    assert step(done, "slow").children.cancelled == 1
    assert done.step_counts.failed == 4 and done.step_counts.skipped == 1


def test_policy_stop_scenario(stub) -> None:
    """The job FAILED; pending steps SKIPPED and running ones CANCELLED for JOB_STOPPED."""
    job = submit(stub, toml("stop", shell("bad", "sleep 0.2; exit 1"),
                            shell("sibling", "sleep 30"),
                            shell("after", "true", extra='depends = ["bad"]')))
    done = finish(stub, job.job_id)
    assert done.status == pb.JOB_STATUS_FAILED
    assert done.failure.reason == pb.FAILURE_REASON_CHILD_FAILURES_EXCEEDED
    assert step(done, "bad").status == pb.STEP_STATUS_FAILED and not step(done, "bad").tolerated
    assert (step(done, "after").status, step(done, "after").failure.reason) == (
        pb.STEP_STATUS_SKIPPED, pb.FAILURE_REASON_JOB_STOPPED)
    assert (step(done, "sibling").status, step(done, "sibling").failure.reason) == (
        pb.STEP_STATUS_CANCELLED, pb.FAILURE_REASON_JOB_STOPPED)


def test_all_completed_scenario(stub) -> None:
    done = finish(stub, submit(stub, toml("stop", shell("a", "true"),
                                          shell("b", "true", extra='depends = ["a"]'))).job_id)
    assert done.status == pb.JOB_STATUS_COMPLETED and not done.HasField("failure")
    assert {s.status for s in done.steps} == {pb.STEP_STATUS_COMPLETED}


def test_retry_keeps_the_step_running_with_a_growing_attempt(stub) -> None:
    # Fails on the first attempt only: the marker file is left by attempt 1.
    marker = f"/tmp/stepwatch-retry-{uuid.uuid4().hex}"
    job = submit(stub, toml("stop", shell(
        "flaky", f"test -f {marker} || {{ touch {marker}; exit 1; }}", extra="max_attempts = 2")))
    stream = watch(stub, job.job_id)
    flaky = [e.step_changed for e in events(stream) if e.step_changed.name == "flaky"]
    retry = [s for s in flaky if s.attempt == 2 and s.HasField("previous_attempt_failure")]
    assert retry and retry[0].status == pb.STEP_STATUS_RUNNING
    assert pb.STEP_STATUS_FAILED not in {s.status for s in flaky}
    final = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job
    assert step(final, "flaky").status == pb.STEP_STATUS_COMPLETED and step(final, "flaky").attempt == 2
