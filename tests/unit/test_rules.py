"""The status rules as pure functions, one table row per case."""

import pytest

from orchestrator_service import rules
from orchestrator_service.model import Failure, JobState, StepState
from orchestrator_service.statuses import FailureReason, JobStatus, Policy, StepStatus


def mk_step(name: str, status: StepStatus, attempt: int = 1, max_attempts: int = 1,
            depends: tuple[str, ...] = ()) -> StepState:
    return StepState(step_id=f"id-{name}", job_id="j", index=0, name=name, type="shell",
                     depends_on=depends, status=status, max_attempts=max_attempts,
                     max_child_failures=0, timeout_seconds=None, created_at=0, attempt=attempt)


def mk_job(*steps: StepState, policy: Policy = Policy.STOP) -> JobState:
    return JobState(job_id="j", definition_name="d", description="", on_step_failure=policy.value,
                    status=JobStatus.RUNNING, created_at=0, steps=steps)


@pytest.mark.parametrize(("failed", "allowed", "reason"), [
    (0, 0, None), (1, 1, None), (5, 5, None),
    (1, 0, FailureReason.CHILD_FAILURES_EXCEEDED), (6, 5, FailureReason.CHILD_FAILURES_EXCEEDED),
])
def test_children_outcome(failed: int, allowed: int, reason: FailureReason | None) -> None:
    out = rules.children_outcome(failed, allowed, ["x: exit code 1"])
    assert (out.reason if out else None) == reason
    if out:
        assert f"{failed} children failed" in out.message and "x: exit code 1" in out.message


@pytest.mark.parametrize(("attempt", "max_attempts", "status", "next_attempt"), [
    (1, 1, StepStatus.FAILED, 1), (1, 3, StepStatus.RUNNING, 2), (2, 3, StepStatus.RUNNING, 3),
    (3, 3, StepStatus.FAILED, 3),
])
def test_attempt_failure_retries_while_attempts_remain(attempt: int, max_attempts: int,
                                                       status: StepStatus, next_attempt: int) -> None:
    why = Failure(FailureReason.EXECUTION_FAILED, "boom")
    fields = rules.attempt_failure(mk_step("a", StepStatus.RUNNING, attempt, max_attempts), why, 7)
    assert fields["status"] == status
    assert fields.get("attempt", attempt) == next_attempt
    if status == StepStatus.RUNNING:
        assert fields["previous_attempt_failure"] == why and "failure" not in fields
    else:
        assert fields["failure"] == why and fields["finished_at"] == 7


@pytest.mark.parametrize(("attempt", "max_attempts", "status"), [
    (1, 1, StepStatus.FAILED), (1, 2, StepStatus.RUNNING)])
def test_interrupted_step(attempt: int, max_attempts: int, status: StepStatus) -> None:
    fields = rules.interrupted(mk_step("a", StepStatus.RUNNING, attempt, max_attempts), 1)
    assert fields["status"] == status
    why = fields.get("failure") or fields.get("previous_attempt_failure")
    assert why.reason == FailureReason.ORCHESTRATOR_RESTARTED


def test_stop_policy_skips_pending_and_stops_running_steps() -> None:
    failed = mk_step("a", StepStatus.FAILED)
    failed = StepState(**{**failed.__dict__, "failure": Failure(FailureReason.TIMEOUT, "slow")})
    job = mk_job(failed, mk_step("b", StepStatus.RUNNING), mk_step("c", StepStatus.PENDING, 0),
                 mk_step("d", StepStatus.COMPLETED))
    ch = rules.stop_job(job, failed, 9)
    assert ch.steps["id-b"]["status"] == StepStatus.CANCELLED
    assert ch.steps["id-c"]["status"] == StepStatus.SKIPPED
    assert {f["failure"].reason for f in ch.steps.values()} == {FailureReason.JOB_STOPPED}
    assert "id-a" not in ch.steps and "id-d" not in ch.steps
    assert ch.job["status"] == JobStatus.FAILED
    assert ch.job["failure"] == Failure(FailureReason.TIMEOUT, "step 'a': slow")


def test_cancel_touches_only_non_terminal_steps() -> None:
    job = mk_job(mk_step("a", StepStatus.COMPLETED), mk_step("b", StepStatus.RUNNING),
                 mk_step("c", StepStatus.PENDING, 0), mk_step("d", StepStatus.FAILED))
    ch = rules.cancel(job, 3)
    assert set(ch.steps) == {"id-b", "id-c"}
    assert all(f["status"] == StepStatus.CANCELLED and
               f["failure"].reason == FailureReason.CANCELLED_BY_USER for f in ch.steps.values())
    assert ch.job["status"] == JobStatus.CANCELLED


@pytest.mark.parametrize(("statuses", "expected"), [
    ([StepStatus.COMPLETED, StepStatus.COMPLETED], JobStatus.COMPLETED),
    ([StepStatus.COMPLETED, StepStatus.FAILED], JobStatus.COMPLETED_WITH_FAILURES),
    ([StepStatus.FAILED, StepStatus.SKIPPED], JobStatus.COMPLETED_WITH_FAILURES),
])
def test_final_job_status(statuses: list[StepStatus], expected: JobStatus) -> None:
    assert rules.final_job_status(mk_step(str(i), s) for i, s in enumerate(statuses)) == expected


def test_dependency_rules() -> None:
    a = mk_step("a", StepStatus.FAILED)
    b = mk_step("b", StepStatus.PENDING, 0, depends=("a",))
    c = mk_step("c", StepStatus.COMPLETED)
    d = mk_step("d", StepStatus.PENDING, 0, depends=("c",))
    by = {s.name: s for s in (a, b, c, d)}
    assert rules.blocking_dependency(b, by) is a and not rules.ready(b, by)
    assert rules.blocking_dependency(d, by) is None and rules.ready(d, by)
    assert rules.dependency_skip(a, 1)["failure"].reason == FailureReason.DEPENDENCY_FAILED


@pytest.mark.parametrize("old", [s for s in StepStatus if s.terminal])
@pytest.mark.parametrize("new", list(StepStatus))
def test_a_terminal_step_status_never_changes(old: StepStatus, new: StepStatus) -> None:
    if new == old:
        rules.check_step_transition(old, new)
    else:
        with pytest.raises(rules.TerminalStatusError):
            rules.check_step_transition(old, new)


@pytest.mark.parametrize("old", [s for s in JobStatus if s.terminal])
def test_a_terminal_job_status_never_changes(old: JobStatus) -> None:
    with pytest.raises(rules.TerminalStatusError):
        rules.check_job_transition(old, JobStatus.RUNNING)


def test_tolerated_only_under_continue() -> None:
    assert rules.tolerated(Policy.CONTINUE) and not rules.tolerated(Policy.STOP)
