"""The event log's format is the contract's: an event is encoded to ``JobEvent`` bytes once,
when it is committed; the log stores those bytes, the broker fans them out, and WatchJob
sends them to every watcher as they are (a ``WatchJobResponse`` is the event's bytes behind a
two-part header). ``decode`` gives the domain values back for the server's own readers.
"""

from __future__ import annotations

from dataclasses import replace

from google.protobuf.timestamp_pb2 import Timestamp

from stepwatch.v1 import orchestrator_pb2 as pb

from .model import AttemptRecord, ChildCounts, Event, Failure, JobState, StepCounts, StepState
from .statuses import FailureReason, JobStatus, StepStatus

__all__ = ["decode", "encode", "fill_job", "fill_step", "watch_response"]

EVENT_TAG = b"\x12"  # WatchJobResponse.event: field 2, length-delimited


def encode(e: Event) -> bytes:
    """The event as JobEvent bytes (made once, at commit)."""
    msg = pb.JobEvent(seq=e.seq, job_id=e.job_id)
    msg.emitted_at.FromMicroseconds(e.emitted_at)
    if e.step is not None:
        fill_step(msg.step_changed, e.step)
    elif e.job is not None:
        fill_job(msg.job_changed, e.job)
    return msg.SerializeToString()


def watch_response(event_bytes: bytes) -> bytes:
    """``WatchJobResponse(event=...)`` without parsing or building a message."""
    return EVENT_TAG + _varint(len(event_bytes)) + event_bytes


def decode(data: bytes) -> Event:
    """The domain event back from its bytes (``wire`` kept, so it is not encoded again)."""
    msg = pb.JobEvent.FromString(data)
    kind = msg.WhichOneof("change")
    event = Event(msg.job_id, msg.seq, msg.emitted_at.ToMicroseconds(),
                  step=_step_state(msg.job_id, msg.step_changed) if kind == "step_changed" else None,
                  job=_job_state(msg.job_changed) if kind == "job_changed" else None)
    return replace(event, wire=data)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ts(target: Timestamp, us: int | None) -> None:
    if us is not None:
        target.FromMicroseconds(us)


def _us(msg: object, name: str) -> int | None:
    return getattr(msg, name).ToMicroseconds() if msg.HasField(name) else None  # type: ignore[attr-defined]


def _failure(target: pb.Failure, f: Failure) -> None:
    target.reason = int(f.reason)  # type: ignore[assignment]
    target.message = f.message


def _failure_of(msg: object, name: str) -> Failure | None:
    if not msg.HasField(name):  # type: ignore[attr-defined]
        return None
    f = getattr(msg, name)
    return Failure(FailureReason(f.reason), f.message)


def fill_step(m: pb.Step, s: StepState) -> None:
    """Set a Step message's fields from the domain value (field by field: no copies)."""
    m.step_id, m.index, m.name, m.type = s.step_id, s.index, s.name, s.type
    m.depends_on.extend(s.depends_on)
    m.status = int(s.status)  # type: ignore[assignment]
    if s.failure is not None:
        _failure(m.failure, s.failure)
    m.tolerated = s.tolerated
    c = s.children
    m.children.total, m.children.pending, m.children.running = c.total, c.pending, c.running
    m.children.completed, m.children.failed, m.children.cancelled = (c.completed, c.failed,
                                                                      c.cancelled)
    m.document_count, m.attempt, m.max_attempts = s.document_count, s.attempt, s.max_attempts
    _ts(m.created_at, s.created_at)
    _ts(m.started_at, s.started_at)
    _ts(m.finished_at, s.finished_at)
    if s.previous_attempt_failure is not None:
        _failure(m.previous_attempt_failure, s.previous_attempt_failure)
    m.max_child_failures = s.max_child_failures
    m.timeout_seconds = s.timeout_seconds or 0.0
    m.carried_from = s.carried_from
    for a in s.attempts:
        r = m.attempts.add()
        r.attempt, r.status = a.attempt, int(a.status)  # type: ignore[assignment]
        if a.failure is not None:
            _failure(r.failure, a.failure)
        _ts(r.started_at, a.started_at)
        _ts(r.finished_at, a.finished_at)


def _step_state(job_id: str, m: pb.Step) -> StepState:
    c = m.children
    return StepState(
        step_id=m.step_id, job_id=job_id, index=m.index, name=m.name, type=m.type,
        depends_on=tuple(m.depends_on), status=StepStatus(m.status), max_attempts=m.max_attempts,
        max_child_failures=m.max_child_failures, timeout_seconds=m.timeout_seconds or None,
        created_at=m.created_at.ToMicroseconds(), failure=_failure_of(m, "failure"),
        tolerated=m.tolerated,
        children=ChildCounts(c.total, c.pending, c.running, c.completed, c.failed, c.cancelled),
        document_count=m.document_count, attempt=m.attempt, started_at=_us(m, "started_at"),
        finished_at=_us(m, "finished_at"),
        previous_attempt_failure=_failure_of(m, "previous_attempt_failure"),
        carried_from=m.carried_from,
        attempts=tuple(AttemptRecord(a.attempt, StepStatus(a.status), a.started_at.ToMicroseconds(),
                                     _us(a, "finished_at"), _failure_of(a, "failure"))
                       for a in m.attempts))


def fill_job(m: pb.Job, j: JobState) -> None:
    m.job_id, m.definition_name, m.description = j.job_id, j.definition_name, j.description
    m.status = int(j.status)  # type: ignore[assignment]
    if j.failure is not None:
        _failure(m.failure, j.failure)
    sc = j.step_counts
    m.step_counts.total, m.step_counts.pending, m.step_counts.running = (sc.total, sc.pending,
                                                                        sc.running)
    m.step_counts.completed, m.step_counts.failed = sc.completed, sc.failed
    m.step_counts.skipped, m.step_counts.cancelled = sc.skipped, sc.cancelled
    m.on_step_failure = j.on_step_failure
    _ts(m.created_at, j.created_at)
    _ts(m.started_at, j.started_at)
    _ts(m.finished_at, j.finished_at)
    m.head_seq = j.head_seq
    m.rerun_of = j.rerun_of
    for s in j.steps:
        fill_step(m.steps.add(), s)


def _job_state(m: pb.Job) -> JobState:
    sc = m.step_counts
    return JobState(
        job_id=m.job_id, definition_name=m.definition_name, description=m.description,
        on_step_failure=m.on_step_failure, status=JobStatus(m.status),
        created_at=m.created_at.ToMicroseconds(), head_seq=m.head_seq,
        failure=_failure_of(m, "failure"),
        step_counts=StepCounts(sc.total, sc.pending, sc.running, sc.completed, sc.failed,
                               sc.skipped, sc.cancelled),
        started_at=_us(m, "started_at"), finished_at=_us(m, "finished_at"),
        steps=tuple(_step_state(m.job_id, s) for s in m.steps), rerun_of=m.rerun_of)
