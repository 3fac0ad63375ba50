"""The status rules (DESIGN.md, "Status rules"). Pure: state in, typed decisions out.

Every status decision of the orchestrator is made here and returned as a
frozen value: a ``StepTransition`` (the whole new status of one step) or a
``Decision`` (several steps and the job header, written in one transaction).
The engine asks; the store applies the answer under the job's lock, fenced by
the attempt it names, and refuses to move a terminal status.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from stepwatch.words import plural

from .model import AttemptRecord, Failure, JobState, StepState
from .statuses import ChildStatus, FailureReason, JobStatus, Policy, StepStatus

__all__ = [
    "Decision", "JobTransition", "NextActions", "StepTransition", "TerminalStatusError",
    "attempt_failed", "attempt_records", "attempt_succeeded", "blocking_dependency", "cancel",
    "carried_step", "check_job_transition", "check_step_transition", "child_ended_reason",
    "child_failure_reason", "children_outcome", "close_out_child", "cluster_failed",
    "cluster_retry_delay", "conclude", "dependency_skipped", "execution_failed", "finish_job",
    "init_failed", "internal_error", "interrupted", "interrupted_job", "next_actions",
    "over_tolerance", "ready", "rerun_carries", "start_attempt", "start_job", "stop_job",
    "timed_out", "to_skip", "tolerated",
]


class TerminalStatusError(Exception):
    """An attempt to move a status that is already terminal."""


@dataclass(frozen=True, slots=True)
class StepTransition:
    """The whole new status of one step. ``attempt`` is the attempt it moves to."""

    step_id: str
    status: StepStatus
    attempt: int
    failure: Failure | None
    previous_attempt_failure: Failure | None
    tolerated: bool
    started_at: int | None
    finished_at: int | None
    #: Every attempt after this transition (the one it ends, closed with its outcome).
    attempts: tuple[AttemptRecord, ...] = ()

    @property
    def ends_attempt(self) -> bool:
        """True when the attempt named by the write is over (terminal, or a new attempt)."""
        return self.status.terminal

    @classmethod
    def of(cls, step: StepState, status: StepStatus, *, attempt: int | None = None,
           failure: Failure | None = None, previous: Failure | None = None,
           tolerated: bool = False, started_at: int | None = None,
           finished_at: int | None = None, at: int | None = None) -> StepTransition:
        """``at``: when it happens (defaults to the end, or else the start, it sets)."""
        new_attempt = step.attempt if attempt is None else attempt
        when = at if at is not None else finished_at if finished_at is not None else (
            started_at if started_at is not None else 0)
        return cls(step.step_id, status, new_attempt, failure, previous, tolerated,
                   step.started_at if started_at is None else started_at, finished_at,
                   attempt_records(step, status, new_attempt, failure, previous, when))


def attempt_records(step: StepState, status: StepStatus, attempt: int, failure: Failure | None,
                    previous: Failure | None, at: int) -> tuple[AttemptRecord, ...]:
    """The step's attempts after a transition. A new attempt closes the one before it as
    FAILED, with the failure it is retried for; a terminal status closes the running one
    with that status and failure; an attempt is RUNNING in between."""
    records = list(step.attempts)
    running = records[-1] if records and records[-1].finished_at is None else None
    if attempt != step.attempt:
        if running is not None:
            records[-1] = replace(running, status=StepStatus.FAILED, finished_at=at,
                                  failure=previous)
        if attempt > 0:
            records.append(AttemptRecord(attempt, StepStatus.RUNNING, at))
        running = records[-1] if records and records[-1].finished_at is None else None
    if status.terminal and running is not None:
        records[-1] = replace(running, status=status, finished_at=at, failure=failure)
    return tuple(records)


@dataclass(frozen=True, slots=True)
class JobTransition:
    """The job header's new status."""

    status: JobStatus
    failure: Failure | None
    started_at: int | None
    finished_at: int | None


@dataclass(frozen=True, slots=True)
class Decision:
    """What one transaction writes: step transitions and, maybe, the job's."""

    steps: tuple[StepTransition, ...] = ()
    job: JobTransition | None = None

    @property
    def empty(self) -> bool:
        return not self.steps and self.job is None


def check_step_transition(old: StepStatus, new: StepStatus) -> None:
    if old.terminal:
        raise TerminalStatusError(f"step status {old.name} is terminal; refused {new.name}")


def check_job_transition(old: JobStatus, new: JobStatus) -> None:
    if old.terminal:
        raise TerminalStatusError(f"job status {old.name} is terminal; refused {new.name}")


# -- why an attempt failed ------------------------------------------------------

def init_failed(message: str) -> Failure:
    """Init of a step's handler raised: the handler's message, verbatim."""
    return Failure(FailureReason.INIT_FAILED, message or "step init failed")


def execution_failed(message: str) -> Failure:
    """The step's code said its attempt failed (StepFailed): its message, verbatim."""
    return Failure(FailureReason.EXECUTION_FAILED, message or "the step failed")


def cluster_failed(message: str) -> Failure:
    """The cluster running the children failed (scheduler gone, no workers): the attempt
    failed, for a reason outside the step; retried like any failed attempt, after a pause."""
    return Failure(FailureReason.EXECUTION_FAILED, message or "the executor failed")


RETRY_BASE_S = 1.0
RETRY_CAP_S = 30.0


def cluster_retry_delay(faults: int) -> float:
    """Seconds before the next attempt after ``faults`` cluster faults in a row: exponential,
    capped (a cluster that is down is not asked again at once)."""
    return 0.0 if faults <= 0 else min(RETRY_CAP_S, RETRY_BASE_S * 2.0 ** (faults - 1))


def over_tolerance(failed: int, max_child_failures: int) -> bool:
    """More children failed than the step tolerates: its attempt stops (no child starts)."""
    return failed > max_child_failures


def close_out_child(status: ChildStatus) -> ChildStatus:
    """A child's status once its attempt has ended: one still PENDING or RUNNING is
    CANCELLED (the attempt stopped it, or never started it); a finished one stays."""
    return ChildStatus.CANCELLED if status in (ChildStatus.PENDING, ChildStatus.RUNNING) \
        else status


def child_ended_reason(error: str | None) -> FailureReason | None:
    """Why a child that ended failed: its run raised (``error``), an execution failure."""
    return None if error is None else FailureReason.EXECUTION_FAILED


def child_failure_reason(stored: int | None) -> FailureReason:
    """A failed child's reason: as stored, or (rows of versions that stored none) the
    execution failure every child failure was then."""
    return FailureReason.EXECUTION_FAILED if stored is None else FailureReason(stored)


def children_outcome(failed: int, max_child_failures: int,
                     first_errors: Iterable[str] = ()) -> Failure | None:
    """None: the attempt succeeded (failed count stays visible). Else why it failed."""
    if not over_tolerance(failed, max_child_failures):
        return None
    shown = "; ".join(list(first_errors)[:3])
    return Failure(
        FailureReason.CHILD_FAILURES_EXCEEDED,
        f"{plural(failed, 'child', 'children')} failed, more than max_child_failures = "
        f"{max_child_failures}"
        + (f"; first: {shown}" if shown else ""),
    )


def timed_out(timeout_seconds: float) -> Failure:
    return Failure(FailureReason.TIMEOUT,
                   f"step ran past its timeout of {timeout_seconds:g} s; children were stopped")


# -- one step ---------------------------------------------------------------------

def tolerated(policy: Policy) -> bool:
    """A FAILED step is tolerated when the policy lets the job go on."""
    return policy == Policy.CONTINUE


def start_attempt(step: StepState, now: int) -> StepTransition:
    """A ready PENDING step starts its first attempt."""
    return StepTransition.of(step, StepStatus.RUNNING, attempt=1, started_at=now)


def attempt_succeeded(step: StepState, now: int) -> StepTransition:
    return StepTransition.of(step, StepStatus.COMPLETED, finished_at=now)


def attempt_failed(step: StepState, failure: Failure, policy: Policy, now: int) -> StepTransition:
    """With attempts left the step stays RUNNING, attempt + 1, the failure kept; else FAILED."""
    if step.attempt < step.max_attempts:
        return StepTransition.of(step, StepStatus.RUNNING, attempt=step.attempt + 1, at=now,
                                 previous=failure)
    return StepTransition.of(step, StepStatus.FAILED, failure=failure,
                             tolerated=tolerated(policy), finished_at=now)


def interrupted(step: StepState, policy: Policy, now: int) -> StepTransition:
    """The process died while the step ran: a new attempt, or FAILED."""
    return attempt_failed(step, Failure(
        FailureReason.ORCHESTRATOR_RESTARTED,
        f"the orchestrator stopped while attempt {step.attempt} ran"), policy, now)


def interrupted_job(job: JobState, now: int) -> Decision:
    """Recovery after the process died: each step that was RUNNING, by ``interrupted``."""
    policy = Policy(job.on_step_failure)
    return Decision(tuple(interrupted(s, policy, now) for s in job.steps
                          if s.status == StepStatus.RUNNING))


def blocking_dependency(step: StepState, by_name: Mapping[str, StepState]) -> StepState | None:
    """The first dependency that is terminal but not COMPLETED, if any."""
    for dep in step.depends_on:
        d = by_name[dep]
        if d.status.terminal and d.status != StepStatus.COMPLETED:
            return d
    return None


def ready(step: StepState, by_name: Mapping[str, StepState], completing: str = "") -> bool:
    """A PENDING step starts when every step it depends on is COMPLETED (``completing``:
    a step taken as COMPLETED whatever ``by_name`` says: its end is being written so)."""
    return step.status == StepStatus.PENDING and all(
        d == completing or by_name[d].status == StepStatus.COMPLETED for d in step.depends_on)


def ready_after(name: str, steps: Mapping[str, StepState],
                dependents: Mapping[str, Sequence[str]], running: Collection[str],
                completing: str = "") -> tuple[str, ...]:
    """The steps that depend on ``name`` and are ready now (not already running)."""
    return tuple(d for d in dependents.get(name, ())
                 if d not in running and ready(steps[d], steps, completing))


@dataclass(frozen=True)
class NextActions:
    """What a job's run loop does next, at its start or after one step's task ended."""

    #: The stop policy ends the job: this step FAILED (nothing else is done then).
    stop: StepState | None = None
    #: Steps that did not complete: whatever depends on them is SKIPPED (``to_skip``).
    blocked: tuple[StepState, ...] = ()
    #: Steps to run now, by name (ready ones, and at the start those left RUNNING).
    launch: tuple[str, ...] = ()


def next_actions(steps: Mapping[str, StepState], policy: Policy, ended: StepState | None,
                 dependents: Mapping[str, Sequence[str]],
                 running: Collection[str]) -> NextActions:
    """``ended``: the step whose task just ended (as written); None when the run starts."""
    if ended is None:
        failed = next((s for s in steps.values() if s.status == StepStatus.FAILED), None)
        if failed is not None and policy == Policy.STOP:
            return NextActions(stop=failed)
        return NextActions(
            blocked=tuple(s for s in steps.values()
                          if s.status.terminal and s.status != StepStatus.COMPLETED),
            launch=tuple(s.name for s in steps.values()
                         if s.status == StepStatus.RUNNING or ready(s, steps)))
    if ended.status == StepStatus.FAILED and policy == Policy.STOP:
        return NextActions(stop=ended)
    return NextActions(
        blocked=() if ended.status == StepStatus.COMPLETED else (ended,),
        launch=ready_after(ended.name, steps, dependents, running))


def to_skip(blocked: Iterable[StepState], steps: Mapping[str, StepState],
            dependents: Mapping[str, Sequence[str]]) -> list[tuple[StepState, StepState]]:
    """The PENDING steps that depend directly on a blocked one, each with that dependency
    (one layer: what they block in turn is the next call's)."""
    out: dict[str, tuple[StepState, StepState]] = {}
    for dep in blocked:
        for name in dependents.get(dep.name, ()):
            s = steps[name]
            if s.status == StepStatus.PENDING and s.step_id not in out:
                out[s.step_id] = (s, dep)
    return list(out.values())


def dependency_skipped(step: StepState, dep: StepState, now: int) -> StepTransition:
    return StepTransition.of(step, StepStatus.SKIPPED, finished_at=now, failure=Failure(
        FailureReason.DEPENDENCY_FAILED,
        f"skipped: step {dep.name!r} it depends on ended {dep.status.name}"))


# -- the job --------------------------------------------------------------------------

def start_job(job: JobState, now: int) -> Decision:
    if job.status != JobStatus.PENDING:
        return Decision()
    return Decision(job=JobTransition(JobStatus.RUNNING, None, now, None))


def stop_job(steps: Sequence[StepState], failed: StepState, now: int) -> Decision:
    """Policy `stop` and a step failed: the rest SKIPPED or stopped; the job FAILED."""
    why = Failure(FailureReason.JOB_STOPPED, f"step {failed.name!r} failed")
    out = []
    for s in steps:
        if s.status == StepStatus.PENDING:
            out.append(StepTransition.of(s, StepStatus.SKIPPED, failure=why, finished_at=now))
        elif s.status == StepStatus.RUNNING:
            out.append(StepTransition.of(s, StepStatus.CANCELLED, failure=why, finished_at=now))
    return Decision(tuple(out), _job_ends(JobStatus.FAILED, _step_failure(failed), now))


def cancel(job: JobState, now: int) -> Decision:
    """CancelJob: non-terminal steps CANCELLED_BY_USER; the job CANCELLED.

    A cancel that finds every step already finished cancelled nothing: the job ends as
    its steps decide (``conclude``), not CANCELLED beside steps that all completed.
    """
    steps = job.steps
    if all(s.status.terminal for s in steps):
        return conclude(job, now)
    # The label says "Cancelled by user"; the message says what the cancel stopped.
    running = sum(s.status == StepStatus.RUNNING for s in steps)
    waiting = sum(not s.status.terminal for s in steps) - running
    stopped = Failure(FailureReason.CANCELLED_BY_USER, "stopped while running")
    unstarted = Failure(FailureReason.CANCELLED_BY_USER, "never started")
    out = tuple(StepTransition.of(s, StepStatus.CANCELLED,
                                  failure=stopped if s.status == StepStatus.RUNNING else unstarted,
                                  finished_at=now)
                for s in steps if not s.status.terminal)
    parts = [f"{plural(running, 'step')} stopped" if running else "",
             f"{plural(waiting, 'step')} never started" if waiting else ""]
    why = Failure(FailureReason.CANCELLED_BY_USER, ", ".join(p for p in parts if p))
    return Decision(out, _job_ends(JobStatus.CANCELLED, why, now))


def internal_error(steps: Sequence[StepState], message: str, now: int) -> Decision:
    """The orchestrator could not go on with the job: say so rather than leave it RUNNING."""
    why = Failure(FailureReason.INTERNAL_ERROR, f"the orchestrator could not go on: {message}")
    stopped = Failure(FailureReason.JOB_STOPPED, "an internal error in the orchestrator stopped the job")
    out = []
    for s in steps:
        if s.status == StepStatus.RUNNING:
            out.append(StepTransition.of(s, StepStatus.FAILED, failure=why, finished_at=now))
        elif s.status == StepStatus.PENDING:
            out.append(StepTransition.of(s, StepStatus.SKIPPED, failure=stopped, finished_at=now))
    return Decision(tuple(out), _job_ends(JobStatus.FAILED, why, now))


def conclude(job: JobState, now: int) -> Decision:
    """Every step terminal: the job's outcome, as its run would decide it (policy `stop` and
    a FAILED step: FAILED; otherwise finish_job)."""
    failed = next((s for s in job.steps if s.status == StepStatus.FAILED), None)
    if failed is not None and Policy(job.on_step_failure) == Policy.STOP:
        return stop_job(job.steps, failed, now)
    return finish_job(job.steps, now)


def finish_job(steps: Sequence[StepState], now: int) -> Decision:
    """Every step terminal: COMPLETED, or COMPLETED_WITH_FAILURES naming the first that did not."""
    if any(not s.status.terminal for s in steps):
        raise ValueError("finish_job needs every step terminal")
    first = next((s for s in steps if s.status != StepStatus.COMPLETED), None)
    if first is None:
        return Decision(job=_job_ends(JobStatus.COMPLETED, None, now))
    return Decision(job=_job_ends(JobStatus.COMPLETED_WITH_FAILURES, _step_failure(first), now))


def rerun_carries(original: JobState, failed_only: bool) -> frozenset[str]:
    """The steps a rerun carries over as COMPLETED: none, or (failed-only) those that completed.

    A completed step's dependencies all completed, so what is carried is closed under
    dependencies: a carried step never waits on one that runs again.
    """
    if not failed_only:
        return frozenset()
    return frozenset(s.name for s in original.steps if s.status == StepStatus.COMPLETED)


def carried_step(done: StepState, original_job: str) -> StepState:
    """A step a rerun carries over: what the original completed stays COMPLETED, named as
    carried from that job, with no failure of any earlier attempt."""
    return replace(done, status=StepStatus.COMPLETED, carried_from=original_job, failure=None,
                   previous_attempt_failure=None, tolerated=False)


def _job_ends(status: JobStatus, failure: Failure | None, now: int) -> JobTransition:
    # started_at None keeps the stored value (the store never clears it).
    return JobTransition(status, failure, None, now)


def _step_failure(step: StepState) -> Failure:
    f = step.failure or Failure(FailureReason.EXECUTION_FAILED, "")
    return Failure(f.reason, f"step {step.name!r}: {f.message}")
