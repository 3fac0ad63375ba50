"""The orchestrator's view of jobs and steps: plain values, serialisable to JSON.

An event's ``change`` is one of these, whole: a StepState or a job header
(a JobState with no steps). Times are microseconds since the Unix epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

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
    #: The event as the contract's JobEvent bytes, made once at commit (wire.py).
    wire: bytes = field(default=b"", compare=False, repr=False)

    @property
    def ends_job(self) -> bool:
        """True for the job's terminal header event: the last event of its log."""
        return self.job is not None and self.job.status.terminal


def to_json(value: StepState | JobState) -> dict[str, Any]:
    """The value as plain JSON types; field by field (``asdict`` deep-copies, 10x slower)."""
    if isinstance(value, StepState):
        return _step_json(value)
    return {
        "job_id": value.job_id, "definition_name": value.definition_name,
        "description": value.description, "on_step_failure": value.on_step_failure,
        "status": int(value.status), "created_at": value.created_at, "head_seq": value.head_seq,
        "failure": _failure_json(value.failure),
        "step_counts": _counts_json(value.step_counts),
        "started_at": value.started_at, "finished_at": value.finished_at,
        "steps": [_step_json(s) for s in value.steps], "rerun_of": value.rerun_of,
    }


def _step_json(s: StepState) -> dict[str, Any]:
    return {
        "step_id": s.step_id, "job_id": s.job_id, "index": s.index, "name": s.name,
        "type": s.type, "depends_on": list(s.depends_on), "status": int(s.status),
        "max_attempts": s.max_attempts, "max_child_failures": s.max_child_failures,
        "timeout_seconds": s.timeout_seconds, "created_at": s.created_at,
        "failure": _failure_json(s.failure), "tolerated": s.tolerated,
        "children": _counts_json(s.children), "document_count": s.document_count,
        "attempt": s.attempt, "started_at": s.started_at, "finished_at": s.finished_at,
        "previous_attempt_failure": _failure_json(s.previous_attempt_failure),
        "carried_from": s.carried_from,
        "attempts": [{"attempt": a.attempt, "status": int(a.status), "started_at": a.started_at,
                      "finished_at": a.finished_at, "failure": _failure_json(a.failure)}
                     for a in s.attempts],
    }


def _failure_json(f: Failure | None) -> dict[str, Any] | None:
    return None if f is None else {"reason": int(f.reason), "message": f.message}


def _counts_json(c: ChildCounts | StepCounts) -> dict[str, int]:
    return dict(c.__dict__)


def _failure(d: dict[str, Any] | None) -> Failure | None:
    return None if d is None else Failure(FailureReason(d["reason"]), d["message"])


def step_from_json(d: dict[str, Any]) -> StepState:
    return StepState(**{
        **d,
        "depends_on": tuple(d["depends_on"]),
        "status": StepStatus(d["status"]),
        "failure": _failure(d["failure"]),
        "previous_attempt_failure": _failure(d["previous_attempt_failure"]),
        "children": ChildCounts(**d["children"]),
        "attempts": tuple(AttemptRecord(a["attempt"], StepStatus(a["status"]), a["started_at"],
                                        a["finished_at"], _failure(a["failure"]))
                          for a in d.get("attempts", ())),
    })


def job_from_json(d: dict[str, Any]) -> JobState:
    return JobState(**{
        **d,
        "status": JobStatus(d["status"]),
        "failure": _failure(d["failure"]),
        "step_counts": StepCounts(**d["step_counts"]),
        "steps": tuple(step_from_json(s) for s in d["steps"]),
    })
