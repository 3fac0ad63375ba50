"""The status rules (DESIGN.md, "Status rules"). Pure: state in, decisions out.

Each function answers one row of the table. The engine asks; the store applies
the answer under the job's lock, and refuses to move a terminal status.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .model import Failure, JobState, StepState
from .statuses import FailureReason, JobStatus, Policy, StepStatus


class TerminalStatusError(Exception):
    """An attempt to move a status that is already terminal."""


@dataclass(frozen=True)
class Changes:
    """What to write in one transaction: field updates per step_id, and for the job."""

    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)


def check_step_transition(old: StepStatus, new: StepStatus) -> None:
    if old.terminal and new != old:
        raise TerminalStatusError(f"step status {old.name} is terminal; refused {new.name}")


def check_job_transition(old: JobStatus, new: JobStatus) -> None:
    if old.terminal and new != old:
        raise TerminalStatusError(f"job status {old.name} is terminal; refused {new.name}")


# -- one step -----------------------------------------------------------------

def init_failed(message: str) -> Failure:
    """Init of a step's handler raised: the handler's message, verbatim."""
    return Failure(FailureReason.INIT_FAILED, message or "step init failed")


def children_outcome(failed: int, max_child_failures: int,
                     first_errors: Iterable[str] = ()) -> Failure | None:
    """None: the step COMPLETED (failed count stays visible). Else why it FAILED."""
    if failed <= max_child_failures:
        return None
    shown = "; ".join(list(first_errors)[:3])
    return Failure(
        FailureReason.CHILD_FAILURES_EXCEEDED,
        f"{failed} children failed, more than max_child_failures = {max_child_failures}"
        + (f"; first: {shown}" if shown else ""),
    )


def timed_out(timeout_seconds: float) -> Failure:
    return Failure(FailureReason.TIMEOUT,
                   f"step ran past its timeout of {timeout_seconds:g} s; children were stopped")


def should_retry(attempt: int, max_attempts: int) -> bool:
    """An attempt failed: with attempts left the step stays RUNNING, attempt + 1."""
    return attempt < max_attempts


def attempt_failure(step: StepState, failure: Failure, now: int) -> dict[str, Any]:
    """The step's update after an attempt failed: a retry, or FAILED."""
    if should_retry(step.attempt, step.max_attempts):
        return {"status": StepStatus.RUNNING, "attempt": step.attempt + 1,
                "previous_attempt_failure": failure}
    return {"status": StepStatus.FAILED, "failure": failure, "finished_at": now,
            "previous_attempt_failure": None}


def interrupted(step: StepState, now: int) -> dict[str, Any]:
    """The process died while the step ran: a new attempt, or FAILED."""
    return attempt_failure(step, Failure(
        FailureReason.ORCHESTRATOR_RESTARTED,
        f"the orchestrator stopped while attempt {step.attempt} ran"), now)


def blocking_dependency(step: StepState, by_name: dict[str, StepState]) -> StepState | None:
    """The first dependency that is terminal but not COMPLETED, if any."""
    for dep in step.depends_on:
        d = by_name[dep]
        if d.status.terminal and d.status != StepStatus.COMPLETED:
            return d
    return None


def ready(step: StepState, by_name: dict[str, StepState]) -> bool:
    """A PENDING step starts when every step it depends on is COMPLETED."""
    return step.status == StepStatus.PENDING and all(
        by_name[d].status == StepStatus.COMPLETED for d in step.depends_on)


def dependency_skip(dep: StepState, now: int) -> dict[str, Any]:
    return {"status": StepStatus.SKIPPED, "finished_at": now, "failure": Failure(
        FailureReason.DEPENDENCY_FAILED,
        f"skipped: step {dep.name!r} it depends on ended {dep.status.name}")}


# -- the job ------------------------------------------------------------------

def tolerated(policy: Policy) -> bool:
    """A FAILED step is tolerated when the policy lets the job go on."""
    return policy == Policy.CONTINUE


def stop_job(job: JobState, failed: StepState, now: int) -> Changes:
    """Policy `stop` and a step failed: the rest SKIPPED or stopped; the job FAILED."""
    why = Failure(FailureReason.JOB_STOPPED, f"job stopped: step {failed.name!r} failed")
    steps: dict[str, dict[str, Any]] = {}
    for s in job.steps:
        if s.status == StepStatus.PENDING:
            steps[s.step_id] = {"status": StepStatus.SKIPPED, "failure": why, "finished_at": now}
        elif s.status == StepStatus.RUNNING:
            steps[s.step_id] = {"status": StepStatus.CANCELLED, "failure": why, "finished_at": now}
    return Changes(steps=steps, job={
        "status": JobStatus.FAILED, "finished_at": now, "failure": _step_failure(failed)})


def cancel(job: JobState, now: int) -> Changes:
    """CancelJob: non-terminal steps CANCELLED_BY_USER; the job CANCELLED."""
    why = Failure(FailureReason.CANCELLED_BY_USER, "cancelled by user")
    steps = {s.step_id: {"status": StepStatus.CANCELLED, "failure": why, "finished_at": now}
             for s in job.steps if not s.status.terminal}
    return Changes(steps=steps, job={"status": JobStatus.CANCELLED, "finished_at": now,
                                     "failure": why})


def final_job_status(steps: Iterable[StepState]) -> JobStatus:
    """Every step terminal: COMPLETED, or COMPLETED_WITH_FAILURES when any did not complete."""
    statuses = [s.status for s in steps]
    assert all(s.terminal for s in statuses), "final_job_status needs every step terminal"
    if all(s == StepStatus.COMPLETED for s in statuses):
        return JobStatus.COMPLETED
    return JobStatus.COMPLETED_WITH_FAILURES


def finish_job(job: JobState, now: int) -> Changes:
    status = final_job_status(job.steps)
    failure = None
    if status == JobStatus.COMPLETED_WITH_FAILURES:
        first = next(s for s in job.steps if s.status != StepStatus.COMPLETED)
        failure = _step_failure(first)
    return Changes(job={"status": status, "finished_at": now, "failure": failure})


def _step_failure(step: StepState) -> Failure:
    f = step.failure or Failure(FailureReason.EXECUTION_FAILED, "")
    return Failure(f.reason, f"step {step.name!r}: {f.message}")
