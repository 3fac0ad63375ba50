"""The orchestrator's view of jobs and steps: plain values, serialisable to JSON.

An event's ``change`` is one of these, whole: a StepState or a job header
(a JobState with no steps). Times are microseconds since the Unix epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .statuses import FailureReason, JobStatus, StepStatus


@dataclass(frozen=True)
class Failure:
    reason: FailureReason
    message: str


@dataclass(frozen=True)
class ChildCounts:
    total: int = 0
    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class StepCounts:
    total: int = 0
    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0

    @classmethod
    def of(cls, statuses: list[StepStatus]) -> StepCounts:
        by = {s: statuses.count(s) for s in StepStatus}
        return cls(total=len(statuses), pending=by[StepStatus.PENDING],
                   running=by[StepStatus.RUNNING], completed=by[StepStatus.COMPLETED],
                   failed=by[StepStatus.FAILED], skipped=by[StepStatus.SKIPPED],
                   cancelled=by[StepStatus.CANCELLED])


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a step as decided: RUNNING until it ends, then its outcome."""

    attempt: int
    status: StepStatus
    started_at: int
    finished_at: int | None = None
    failure: Failure | None = None


@dataclass(frozen=True)
class StepState:
    step_id: str
    job_id: str
    index: int
    name: str
    type: str
    depends_on: tuple[str, ...]
    status: StepStatus
    max_attempts: int
    max_child_failures: int
    timeout_seconds: float | None
    created_at: int
    failure: Failure | None = None
    tolerated: bool = False
    children: ChildCounts = field(default_factory=ChildCounts)
    document_count: int = 0
    attempt: int = 0
    started_at: int | None = None
    finished_at: int | None = None
    previous_attempt_failure: Failure | None = None
    carried_from: str = ""  # a failed-only rerun's step carried over from this job
    attempts: tuple[AttemptRecord, ...] = ()  # every attempt so far, in order


@dataclass(frozen=True)
class JobState:
    job_id: str
    definition_name: str
    description: str
    on_step_failure: str
    status: JobStatus
    created_at: int
    head_seq: int = 0
    failure: Failure | None = None
    step_counts: StepCounts = field(default_factory=StepCounts)
    started_at: int | None = None
    finished_at: int | None = None
    steps: tuple[StepState, ...] = ()
    rerun_of: str = ""
    #: The typed inputs it runs with, in declaration order.
    inputs: tuple[tuple[str, str | int | float | bool], ...] = ()
    #: A job a schedule started: the schedule, and the nominal time it stands for.
    schedule_id: str = ""
    nominal_time: int | None = None

    def header(self) -> JobState:
        return replace(self, steps=())

    def step(self, name: str) -> StepState:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


@dataclass(frozen=True)
class Event:
    job_id: str
    seq: int
    emitted_at: int
    step: StepState | None = None
    job: JobState | None = None
    #: The event as the contract's JobEvent bytes, made once at commit (codec.py).
    wire: bytes = field(default=b"", compare=False, repr=False)
    #: The same bytes framed as a ``WatchJobResponse``, also once at commit: a live event
    #: goes to every watcher of its job as these bytes, framed once for all of them.
    response: bytes = field(default=b"", compare=False, repr=False)

    @property
    def ends_job(self) -> bool:
        """True for the job's terminal header event: the last event of its log."""
        return self.job is not None and self.job.status.terminal
