"""Domain values -> proto messages. The only place that knows both."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from stepwatch.v1 import orchestrator_pb2 as pb

from . import rules, wire
from .definitions import JobDefinition
from .model import Failure, JobState, StepState
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


def step(s: StepState) -> pb.Step:
    """The step as the contract's message: the same encoder the event log uses (wire.py)."""
    m = pb.Step()
    wire.fill_step(m, s)
    return m


def job(j: JobState) -> pb.Job:
    m = pb.Job()
    wire.fill_job(m, j)
    return m


def definition_info(d: JobDefinition) -> pb.JobDefinitionInfo:
    return pb.JobDefinitionInfo(name=d.name, description=d.description,
                                step_names=[s.name for s in d.steps],
                                on_step_failure=d.on_step_failure.value)


def child(c: ChildRecord) -> pb.Child:
    msg = pb.Child(index=c.index, key=c.key, status=_enum(c.status), attempt=c.attempt,
                   started_at=timestamp(c.started_at), finished_at=timestamp(c.finished_at),
                   output_bytes=c.output_bytes, result=c.result or "")
    if c.error is not None:
        msg.error.CopyFrom(pb.Failure(reason=_enum(rules.child_failure_reason(c.error_reason)),
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
