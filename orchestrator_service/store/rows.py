"""Tables, the statements built once for the hot paths, and the row <-> domain codec."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Row,
    Table,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)

from .. import codec, rules
from ..model import (
    AttemptRecord,
    ChildCounts,
    Event,
    Failure,
    JobState,
    StepCounts,
    StepState,
)
from ..statuses import ChildStatus, FailureReason, JobStatus, StepStatus
from ..tables import (
    ChildRow,
    DocumentRow,
    EventRow,
    JobRow,
    LogChunkRow,
    LogHeadRow,
    MetaRow,
    StepRow,
    WriteReceiptRow,
)
from .values import ChildRecord

IN_CHUNK = 500  # bound for IN (...) lists


NOTIFY_CHANNEL = "stepwatch"  # pg_notify channel: "there is more" for other replicas


J = cast(Table, JobRow.__table__)


S = cast(Table, StepRow.__table__)


C = cast(Table, ChildRow.__table__)


D = cast(Table, DocumentRow.__table__)


E = cast(Table, EventRow.__table__)


M = cast(Table, MetaRow.__table__)


L = cast(Table, LogChunkRow.__table__)


LH = cast(Table, LogHeadRow.__table__)


R = cast(Table, WriteReceiptRow.__table__)


REQUEST_ID_TTL_US = 24 * 3600 * 1_000_000  # a SubmitJob request_id names one job for a day


MIN_PREFIX = 8  # characters of an id that may stand for the whole id


HEX = frozenset("0123456789abcdef")


_COUNT_COLUMN = {
    StepStatus.PENDING: "steps_pending", StepStatus.RUNNING: "steps_running",
    StepStatus.COMPLETED: "steps_completed", StepStatus.FAILED: "steps_failed",
    StepStatus.SKIPPED: "steps_skipped", StepStatus.CANCELLED: "steps_cancelled",
}


# What rules.close_out_child changes when an attempt ends, and what it makes of it.
_UNFINISHED_CHILD = tuple(int(s) for s in ChildStatus if rules.close_out_child(s) != s)
_CLOSED_OUT_CHILD = int(rules.close_out_child(ChildStatus.PENDING))


_CHILD_COUNT_COLUMNS = ("children_total", "children_pending", "children_running",
                        "children_completed", "children_failed", "children_cancelled")


_STEP_STATUS_COLUMNS = ("status", "attempt", "tolerated", "failure_reason", "failure_message",
                        "previous_failure_reason", "previous_failure_message", "started_at",
                        "finished_at", "document_count", "attempts", *_CHILD_COUNT_COLUMNS)


_JOB_COUNT_COLUMNS = ("head_seq", *_COUNT_COLUMN.values())


_JOB_STATUS_COLUMNS = ("status", "failure_reason", "failure_message", "started_at", "finished_at")


def _set(table: Table, key: str, columns: Sequence[str]) -> Any:
    """UPDATE table SET col = :v_col ... WHERE key = :k (bind names may not equal column names)."""
    return update(table).where(table.c[key] == bindparam("k")).values(
        {col: bindparam(f"v_{col}") for col in columns})


def _params(key: str, values: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    return {"k": key, **{f"v_{col}": values[col] for col in columns}}


# Hot-path statements are built once: building a Core statement costs more than running it.
_LOCK_JOB = select(J).where(J.c.job_id == bindparam("k")).with_for_update()


_NOTIFY = select(func.pg_notify(NOTIFY_CHANNEL, bindparam("p")))


_STEP = select(S).where(S.c.step_id == bindparam("k"))


# A write group's steps, read under the job's lock: one step (most groups), or several.
_STEP_OF_JOB = select(S).where(S.c.job_id == bindparam("k"), S.c.step_id == bindparam("s"))


_STEPS_OF_JOB = select(S).where(S.c.job_id == bindparam("k"),
                                S.c.step_id.in_(bindparam("ids", expanding=True)))


_JOB_OF_STEP = select(S.c.job_id).where(S.c.step_id == bindparam("k"))


_SET_STEP_STATUS = _set(S, "step_id", _STEP_STATUS_COLUMNS)


_SET_STEP_COUNTS = _set(S, "step_id", ("document_count", *_CHILD_COUNT_COLUMNS))


_SET_JOB_COUNTS = _set(J, "job_id", _JOB_COUNT_COLUMNS)


_SET_JOB_STATUS = _set(J, "job_id", (*_JOB_COUNT_COLUMNS, *_JOB_STATUS_COLUMNS))


_INSERT_EVENTS = insert(E)


# Only an unfinished child moves (a terminal child row never changes); row by row, as
# batched.py's one-statement ways fall back to.
_THE_CHILD = (C.c.step_id == bindparam("b_step"), C.c.attempt == bindparam("b_attempt"),
              C.c.idx == bindparam("b_idx"),
              # Literal values: an expanding IN parameter does not work in an executemany.
              C.c.status.in_([literal_column(str(v)) for v in _UNFINISHED_CHILD]))


_CHILD_STARTS = update(C).where(*_THE_CHILD).values(status=bindparam("b_status"),
                                                    started_at=bindparam("b_at"))


# A child that started and ended within one batch is written once: its start time rides
# along (NULL keeps the one written before).
_CHILD_ENDS = update(C).where(*_THE_CHILD).values(
    status=bindparam("b_status"), error=bindparam("b_error"), error_reason=bindparam("b_reason"),
    started_at=func.coalesce(bindparam("b_started", type_=BigInteger), C.c.started_at),
    finished_at=bindparam("b_at"), output_bytes=bindparam("b_bytes"), result=bindparam("b_result"))


_CLOSE_OUT = (update(C).where(C.c.step_id == bindparam("k"), C.c.attempt == bindparam("b_attempt"),
                              C.c.status.in_(_UNFINISHED_CHILD))
              .values(status=_CLOSED_OUT_CHILD, finished_at=bindparam("b_at")))


_LOG_HEAD = select(LH.c.head).where(LH.c.step_id == bindparam("k"), LH.c.attempt == bindparam("b_attempt"))


_NEW_LOG_HEAD = insert(LH)


_SET_LOG_HEAD = (update(LH).where(LH.c.step_id == bindparam("k"), LH.c.attempt == bindparam("b_attempt"))
                 .values(head=bindparam("b_head")))


_RECEIPT = select(R.c.job_id, R.c.first_seq, R.c.last_seq).where(R.c.write_id == bindparam("k"))


_INSERT_RECEIPT = insert(R)


# Both databases speak this upsert: one row, rewritten by every probe.
_PROBE_WRITE = text("INSERT INTO meta (key, value) VALUES ('health_probe', :v) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value")


_CHILD_COUNTS = (select(C.c.status, func.count())
                 .where(C.c.step_id == bindparam("k"), C.c.attempt == bindparam("b_attempt"))
                 .group_by(C.c.status))


# The unfinished child statuses as SQL's IN list (for the batched statements' text).
_UNFINISHED_IN = ", ".join(str(v) for v in _UNFINISHED_CHILD)


def _attempt_logs(steps: Iterable[StepState]) -> set[tuple[str, int]]:
    """Every step's current attempt log: its followers re-read (an attempt may have ended)."""
    return {(s.step_id, max(s.attempt, 1)) for s in steps}


def _step_values(s: StepState) -> dict[str, Any]:
    """A step's status columns, as stored."""
    c = s.children
    return {
        "status": int(s.status), "attempt": s.attempt, "tolerated": s.tolerated,
        "failure_reason": None if s.failure is None else int(s.failure.reason),
        "failure_message": None if s.failure is None else s.failure.message,
        "previous_failure_reason": (None if s.previous_attempt_failure is None
                                    else int(s.previous_attempt_failure.reason)),
        "previous_failure_message": (None if s.previous_attempt_failure is None
                                     else s.previous_attempt_failure.message),
        "started_at": s.started_at, "finished_at": s.finished_at,
        "document_count": s.document_count, "attempts": _attempts_json(s.attempts),
        "children_total": c.total,
        "children_pending": c.pending, "children_running": c.running,
        "children_completed": c.completed, "children_failed": c.failed,
        "children_cancelled": c.cancelled,
    }


def _read_events(c: Connection, job_id: str, after_seq: int, limit: int) -> list[Event]:
    """A page of the log, decoded."""
    return [codec.decode(body) for (body,) in c.execute(
        select(E.c.body).where(E.c.job_id == job_id, E.c.seq > after_seq)
        .order_by(E.c.seq).limit(limit))]


def _read_framed(c: Connection, job_id: str, after_seq: int, limit: int,
                 ) -> list[Event | codec.Framed]:
    """A page of the log for a sender: each event as the response bytes it is sent as,
    except a job event last on the page, which is decoded: it may be the terminal one,
    which a sender stops at. (Nothing follows the terminal event in a log, so a job event
    with another after it is not.)"""
    rows = c.execute(select(E.c.seq, E.c.kind, E.c.body)
                     .where(E.c.job_id == job_id, E.c.seq > after_seq)
                     .order_by(E.c.seq).limit(limit)).all()
    frame, framed = codec.watch_response, codec.Framed
    out: list[Event | codec.Framed] = [framed(seq, frame(body)) for seq, _, body in rows]
    if rows and rows[-1].kind == "job":
        out[-1] = codec.decode(rows[-1].body)
    return out


def _child_record(r: Any, phase: int) -> ChildRecord:
    return ChildRecord(r.idx, r.key, ChildStatus(r.status), r.error, r.error_reason, r.attempt,
                       r.started_at, r.finished_at, r.output_bytes or 0, r.result, phase)


def _failure(reason: int | None, message: str | None) -> Failure | None:
    return None if reason is None else Failure(FailureReason(reason), message or "")


def _step_state(r: Any) -> StepState:
    return StepState(
        step_id=r.step_id, job_id=r.job_id, index=r.idx, name=r.name, type=r.type,
        depends_on=tuple(json.loads(r.depends_on)), status=StepStatus(r.status),
        max_attempts=r.max_attempts, max_child_failures=r.max_child_failures,
        timeout_seconds=r.timeout_seconds, created_at=r.created_at,
        failure=_failure(r.failure_reason, r.failure_message), tolerated=bool(r.tolerated),
        children=ChildCounts(r.children_total, r.children_pending, r.children_running,
                             r.children_completed, r.children_failed, r.children_cancelled),
        document_count=r.document_count, attempt=r.attempt, started_at=r.started_at,
        finished_at=r.finished_at,
        previous_attempt_failure=_failure(r.previous_failure_reason, r.previous_failure_message),
        carried_from=getattr(r, "carried_from", None) or "",
        attempts=_attempts_of(getattr(r, "attempts", None)),
    )


def _attempts_json(records: Sequence[AttemptRecord]) -> str:
    return json.dumps([[a.attempt, int(a.status), a.started_at, a.finished_at,
                        None if a.failure is None else int(a.failure.reason),
                        None if a.failure is None else a.failure.message] for a in records])


def _attempts_of(text: str | None) -> tuple[AttemptRecord, ...]:
    return tuple(AttemptRecord(n, StepStatus(status), started, finished, _failure(reason, message))
                 for n, status, started, finished, reason, message in json.loads(text or "[]"))


def _step_from_values(values: Mapping[str, Any]) -> StepState:
    return _step_state(SimpleNamespace(**values))


def _header(j: Mapping[str, Any] | Row[Any]) -> JobState:
    g = cast(Mapping[str, Any], j if isinstance(j, Mapping) else j._mapping)
    return JobState(
        job_id=g["job_id"], definition_name=g["definition_name"], description=g["description"],
        on_step_failure=g["on_step_failure"], status=JobStatus(g["status"]),
        created_at=g["created_at"], head_seq=g["head_seq"],
        failure=_failure(g["failure_reason"], g["failure_message"]),
        step_counts=StepCounts(
            total=g["steps_total"], pending=g["steps_pending"], running=g["steps_running"],
            completed=g["steps_completed"], failed=g["steps_failed"],
            skipped=g["steps_skipped"], cancelled=g["steps_cancelled"]),
        started_at=g["started_at"], finished_at=g["finished_at"], rerun_of=g.get("rerun_of") or "",
        inputs=tuple(json.loads(g.get("inputs") or "{}").items()),
        schedule_id=g.get("schedule_id") or "", nominal_time=g.get("nominal_at"))
