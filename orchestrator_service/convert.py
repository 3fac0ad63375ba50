"""Domain values -> proto messages. The only place that knows both."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from stepwatch.v1 import orchestrator_pb2 as pb

from .definitions import JobDefinition
from .model import ChildCounts, Event, Failure, JobState, StepCounts, StepState
from .statuses import FailureReason
from .step_types.base import Document
from .store import ChildRecord, LogChunk


def _enum(value: IntEnum) -> Any:
    """A domain enum as the proto's number (the numbers are equal, a unit test holds them)."""
    return int(value)


def timestamp(us: int | None) -> Timestamp | None:
    if us is None:
        return None
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


def failure(f: Failure | None) -> pb.Failure | None:
    return None if f is None else pb.Failure(reason=_enum(f.reason), message=f.message)


def child_counts(c: ChildCounts) -> pb.ChildCounts:
    return pb.ChildCounts(total=c.total, pending=c.pending, running=c.running,
                          completed=c.completed, failed=c.failed, cancelled=c.cancelled)


def step_counts(c: StepCounts) -> pb.StepCounts:
    return pb.StepCounts(total=c.total, pending=c.pending, running=c.running,
                         completed=c.completed, failed=c.failed, skipped=c.skipped,
                         cancelled=c.cancelled)


def step(s: StepState) -> pb.Step:
    return pb.Step(
        step_id=s.step_id, index=s.index, name=s.name, type=s.type, depends_on=s.depends_on,
        status=_enum(s.status), failure=failure(s.failure), tolerated=s.tolerated,
        children=child_counts(s.children), document_count=s.document_count, attempt=s.attempt,
        max_attempts=s.max_attempts, created_at=timestamp(s.created_at),
        started_at=timestamp(s.started_at), finished_at=timestamp(s.finished_at),
        previous_attempt_failure=failure(s.previous_attempt_failure),
        max_child_failures=s.max_child_failures, timeout_seconds=s.timeout_seconds or 0.0,
        carried_from=s.carried_from,
    )


def job(j: JobState) -> pb.Job:
    return pb.Job(
        job_id=j.job_id, definition_name=j.definition_name, description=j.description,
        status=_enum(j.status), failure=failure(j.failure), steps=[step(s) for s in j.steps],
        step_counts=step_counts(j.step_counts), on_step_failure=j.on_step_failure,
        created_at=timestamp(j.created_at), started_at=timestamp(j.started_at),
        finished_at=timestamp(j.finished_at), head_seq=j.head_seq, rerun_of=j.rerun_of,
    )


def event(e: Event) -> pb.JobEvent:
    msg = pb.JobEvent(seq=e.seq, emitted_at=timestamp(e.emitted_at), job_id=e.job_id)
    if e.step is not None:
        msg.step_changed.CopyFrom(step(e.step))
    elif e.job is not None:
        msg.job_changed.CopyFrom(job(e.job))
    return msg


def definition_info(d: JobDefinition) -> pb.JobDefinitionInfo:
    return pb.JobDefinitionInfo(name=d.name, description=d.description,
                                step_names=[s.name for s in d.steps],
                                on_step_failure=d.on_step_failure.value)


def child(c: ChildRecord) -> pb.Child:
    msg = pb.Child(index=c.index, key=c.key, status=_enum(c.status), attempt=c.attempt,
                   started_at=timestamp(c.started_at), finished_at=timestamp(c.finished_at),
                   output_bytes=c.output_bytes, result=c.result or "")
    if c.error is not None:
        msg.error.CopyFrom(pb.Failure(reason=_enum(FailureReason(c.error_reason or 2)),
                                      message=c.error))
    return msg


def log_chunk(c: LogChunk) -> pb.LogChunk:
    msg = pb.LogChunk(offset=c.offset, stream=_enum(c.stream), text=c.text, at=timestamp(c.at))
    if c.child is not None:
        msg.child_index = c.child
    return msg


def document(d: Document) -> pb.Document:
    attrs = Struct()
    attrs.update({k: v for k, v in d.attrs.items()})
    return pb.Document(path=d.path, tags=list(d.tags), attrs=attrs)
