"""Domain values <-> the contract's messages: the one codec, driven by one field table.

The event log's format is the contract's: an event is encoded to ``JobEvent`` bytes once,
when it is committed; the log stores those bytes, the broker fans them out, and WatchJob
sends them to every watcher as they are (a ``WatchJobResponse`` is the event's bytes behind
a two-part header). ``decode`` gives the domain values back for the server's own readers;
the RPC answers (``job``, ``step``, ``child``...) are built from the same table.

Each message's fields are listed once below, by kind: plain (same name, same value both
ways), status (an enum, numbers equal to the proto's: a unit test holds them), time
(microseconds <-> Timestamp, absent when None), failure, and counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from google.protobuf import json_format, struct_pb2
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from stepwatch.v1 import orchestrator_pb2 as pb

from . import rules
from .model import AttemptRecord, ChildCounts, Event, Failure, JobState, StepCounts, StepState
from .schedules import Catchup, Overlap
from .statuses import FailureReason, JobStatus, StepStatus

if TYPE_CHECKING:  # the store imports this module to encode its events
    from .definitions import JobDefinition
    from .step_types.base import Document
    from .store.outbox import DeliveryRecord, SubscriptionRecord
    from .store.scheduled import ScheduleRecord
    from .store.values import ChildRecord, LogChunk

__all__ = ["CATCHUP", "OVERLAP", "child", "decode", "definition_info", "delivery", "document",
           "Framed", "encode", "fill_job", "fill_step", "input_values", "job", "log_chunk", "schedule",
           "step", "subscription", "timestamp", "watch_response"]

EVENT_TAG = b"\x12"  # WatchJobResponse.event: field 2, length-delimited

# -- the field table -------------------------------------------------------------------------

STEP_PLAIN = ("step_id", "index", "name", "type", "tolerated", "document_count", "attempt",
              "max_attempts", "max_child_failures", "carried_from")
STEP_TIMES = ("created_at", "started_at", "finished_at")
STEP_FAILURES = ("failure", "previous_attempt_failure")
JOB_PLAIN = ("job_id", "definition_name", "description", "on_step_failure", "head_seq",
             "rerun_of", "schedule_id")
JOB_TIMES = ("created_at", "started_at", "finished_at", "nominal_time")
ATTEMPT_TIMES = ("started_at", "finished_at")
CHILD_COUNTS = tuple(f.name for f in fields(ChildCounts))
STEP_COUNTS = tuple(f.name for f in fields(StepCounts))

# -- events ----------------------------------------------------------------------------------


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


class Framed(NamedTuple):
    """An event of the log as the ``WatchJobResponse`` bytes a sender writes as they are,
    framed on the reader's thread: a replay makes no Event and frames nothing per event on
    the event loop."""

    seq: int
    response: bytes

    @property
    def ends_job(self) -> bool:
        return False  # a job event that may end the job is read decoded, never framed


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

# -- steps and jobs ----------------------------------------------------------------------------


def fill_step(m: pb.Step, s: StepState) -> None:
    """Set a Step message's fields from the domain value (field by field: no copies)."""
    for name in STEP_PLAIN:
        setattr(m, name, getattr(s, name))
    m.depends_on.extend(s.depends_on)
    m.status = int(s.status)  # type: ignore[assignment]
    m.timeout_seconds = s.timeout_seconds or 0.0
    _fill_times(m, s, STEP_TIMES)
    _fill_failures(m, s, STEP_FAILURES)
    _fill_counts(m.children, s.children, CHILD_COUNTS)
    for a in s.attempts:
        r = m.attempts.add()
        r.attempt, r.status = a.attempt, int(a.status)  # type: ignore[assignment]
        _fill_failures(r, a, ("failure",))
        _fill_times(r, a, ATTEMPT_TIMES)


def _step_state(job_id: str, m: pb.Step) -> StepState:
    return StepState(
        job_id=job_id, depends_on=tuple(m.depends_on), status=StepStatus(m.status),
        timeout_seconds=m.timeout_seconds or None,
        children=ChildCounts(*(getattr(m.children, n) for n in CHILD_COUNTS)),
        attempts=tuple(AttemptRecord(a.attempt, StepStatus(a.status),
                                     a.started_at.ToMicroseconds(), _us(a, "finished_at"),
                                     _failure_of(a, "failure")) for a in m.attempts),
        created_at=m.created_at.ToMicroseconds(),
        started_at=_us(m, "started_at"), finished_at=_us(m, "finished_at"),
        failure=_failure_of(m, "failure"),
        previous_attempt_failure=_failure_of(m, "previous_attempt_failure"),
        **{n: getattr(m, n) for n in STEP_PLAIN})


def fill_job(m: pb.Job, j: JobState) -> None:
    for name in JOB_PLAIN:
        setattr(m, name, getattr(j, name))
    m.status = int(j.status)  # type: ignore[assignment]
    _fill_failures(m, j, ("failure",))
    _fill_counts(m.step_counts, j.step_counts, STEP_COUNTS)
    _fill_times(m, j, JOB_TIMES)
    for name, value in j.inputs:
        m.inputs[name].CopyFrom(_value(value))
    for s in j.steps:
        fill_step(m.steps.add(), s)


def _job_state(m: pb.Job) -> JobState:
    return JobState(
        status=JobStatus(m.status), created_at=m.created_at.ToMicroseconds(),
        failure=_failure_of(m, "failure"),
        step_counts=StepCounts(*(getattr(m.step_counts, n) for n in STEP_COUNTS)),
        started_at=_us(m, "started_at"), finished_at=_us(m, "finished_at"),
        nominal_time=_us(m, "nominal_time"),
        steps=tuple(_step_state(m.job_id, s) for s in m.steps),
        inputs=tuple((k, _python(v)) for k, v in m.inputs.items()),
        **{n: getattr(m, n) for n in JOB_PLAIN})


def step(s: StepState) -> pb.Step:
    m = pb.Step()
    fill_step(m, s)
    return m


def job(j: JobState) -> pb.Job:
    m = pb.Job()
    fill_job(m, j)
    return m


def _fill_times(m: Any, value: Any, names: tuple[str, ...]) -> None:
    for name in names:
        us = getattr(value, name)
        if us is not None:
            getattr(m, name).FromMicroseconds(us)


def _fill_failures(m: Any, value: Any, names: tuple[str, ...]) -> None:
    for name in names:
        f = getattr(value, name)
        if f is not None:
            target = getattr(m, name)
            target.reason, target.message = int(f.reason), f.message


def _fill_counts(m: Any, counts: Any, names: tuple[str, ...]) -> None:
    for name in names:
        setattr(m, name, getattr(counts, name))


def _us(msg: Any, name: str) -> int | None:
    return getattr(msg, name).ToMicroseconds() if msg.HasField(name) else None


def _failure_of(msg: Any, name: str) -> Failure | None:
    if not msg.HasField(name):
        return None
    f = getattr(msg, name)
    return Failure(FailureReason(f.reason), f.message)

# -- the other answers -------------------------------------------------------------------------


def timestamp(us: int | None) -> Timestamp | None:
    if us is None:
        return None
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


def definition_info(d: JobDefinition) -> pb.JobDefinitionInfo:
    info = pb.JobDefinitionInfo(name=d.name, description=d.description,
                                step_names=[s.name for s in d.steps],
                                on_step_failure=d.on_step_failure.value)
    for spec in d.inputs:
        decl = info.inputs.add(name=spec.name, type=spec.type.value, required=spec.required,
                               description=spec.description, choices=spec.choices)
        if spec.default is not None:
            decl.default_value.CopyFrom(_value(spec.default))
    return info


def _value(v: str | int | float | bool) -> struct_pb2.Value:
    """An input's value on the wire (an int as a JSON number: exact up to 2**53)."""
    out = struct_pb2.Value()
    if isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, int | float):
        out.number_value = float(v)
    else:
        out.string_value = v
    return out


def _python(v: struct_pb2.Value) -> str | int | float | bool:
    kind = v.WhichOneof("kind")
    if kind == "bool_value":
        return v.bool_value
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() else n
    return v.string_value


def input_values(values: Mapping[str, struct_pb2.Value]) -> dict[str, Any]:
    """A request's input map as JSON values (what inputs.resolve checks)."""
    return {k: json_format.MessageToDict(v) for k, v in values.items()}


def child(c: ChildRecord) -> pb.Child:
    msg = pb.Child(index=c.index, key=c.key, status=int(c.status), attempt=c.attempt,  # type: ignore[arg-type]
                   started_at=timestamp(c.started_at), finished_at=timestamp(c.finished_at),
                   output_bytes=c.output_bytes, result=c.result or "")
    if c.error is not None:
        msg.error.reason = int(rules.child_failure_reason(c.error_reason))  # type: ignore[assignment]
        msg.error.message = c.error
    return msg


def log_chunk(c: LogChunk) -> pb.LogChunk:
    msg = pb.LogChunk(offset=c.offset, stream=int(c.stream), text=c.text,  # type: ignore[arg-type]
                      at=timestamp(c.at))
    if c.child is not None:
        msg.child_index = c.child
    return msg


def document(d: Document) -> pb.Document:
    attrs = Struct()
    attrs.update(dict(d.attrs))
    return pb.Document(path=d.path, tags=list(d.tags), attrs=attrs)


# -- schedules and webhooks ----------------------------------------------------------------------

OVERLAP = {Overlap.SKIP: pb.OVERLAP_POLICY_SKIP, Overlap.ALLOW: pb.OVERLAP_POLICY_ALLOW,
           Overlap.CANCEL_PREVIOUS: pb.OVERLAP_POLICY_CANCEL_PREVIOUS}
CATCHUP = {Catchup.NONE: pb.CATCHUP_POLICY_NONE, Catchup.LATEST: pb.CATCHUP_POLICY_LATEST,
           Catchup.ALL: pb.CATCHUP_POLICY_ALL}


def schedule(r: ScheduleRecord) -> pb.Schedule:
    spec = r.spec
    msg = pb.Schedule(
        schedule_id=r.schedule_id, definition_name=spec.definition_name, cron=spec.cron,
        time_zone=spec.time_zone, overlap=OVERLAP[spec.overlap], catchup=CATCHUP[spec.catchup],
        paused=spec.paused, description=spec.description, created_at=timestamp(r.created_at),
        next_run_time=None if spec.paused else timestamp(r.next_at),
        last_job_id=r.last_job_id, last_nominal_time=timestamp(r.last_nominal_at),
        skipped=r.skipped, last_error=r.last_error)
    if r.last_job_status is not None:
        msg.last_job_status = int(r.last_job_status)  # type: ignore[assignment]
    for name, value in spec.inputs.items():
        json_format.ParseDict(value, msg.inputs[name])  # type: ignore[arg-type]
    return msg


def subscription(r: SubscriptionRecord) -> pb.Subscription:
    return pb.Subscription(
        subscription_id=r.subscription_id, url=r.spec.url,
        events=sorted(int(e) for e in r.spec.events),  # type: ignore[misc]
        job_statuses=sorted(int(st) for st in r.spec.job_statuses),  # type: ignore[misc]
        definition_name=r.spec.definition_name, description=r.spec.description,
        created_at=timestamp(r.created_at))


def delivery(d: DeliveryRecord) -> pb.Delivery:
    return pb.Delivery(
        delivery_id=d.delivery_id, subscription_id=d.subscription_id,
        event=int(d.event), job_id=d.job_id, step=d.step_name,  # type: ignore[arg-type]
        state=int(d.state), attempts=d.attempts,  # type: ignore[arg-type]
        last_status_code=d.last_status_code, last_error=d.last_error,
        created_at=timestamp(d.created_at), last_attempt_time=timestamp(d.last_attempt_at),
        next_attempt_time=timestamp(d.next_at))
