"""The write path's pieces: step transitions, child moves, logs, documents, deletion."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    insert,
    select,
    update,
)

from .. import rules
from ..model import (
    ChildCounts,
    StepState,
)
from ..rules import StepTransition
from ..statuses import ChildStatus, StepStatus
from ..step_types.base import DocumentPut
from .errors import StaleWrite
from .eventlog import _Log
from .outbox import DEL
from .rows import (
    _CHILD_COUNT_COLUMNS,
    _CHILD_COUNTS,
    _CHILD_ENDS,
    _CHILD_STARTS,
    _CLOSE_OUT,
    _INSERT_CHILDREN,
    _INSERT_CHUNKS,
    _LOG_HEAD,
    _NEW_LOG_HEAD,
    _PG_CHILD_ENDS,
    _PG_CHILD_STARTS,
    _SET_LOG_HEAD,
    _SET_STEP_COUNTS,
    _SET_STEP_STATUS,
    _STEP_STATUS_COLUMNS,
    IN_CHUNK,
    LH,
    C,
    D,
    E,
    J,
    L,
    S,
    _params,
    _step_values,
)
from .values import ChildChange, LogLine, ProgressBatch, now_us


def _delete_jobs(c: Connection, job_ids: list[str]) -> None:
    """Every row of these jobs, children first (one transaction: all or nothing)."""
    if not job_ids:
        return
    steps = list(c.execute(select(S.c.step_id).where(S.c.job_id.in_(job_ids))).scalars())
    for chunk in (steps[i:i + 500] for i in range(0, len(steps), 500)):
        for table in (L, LH, C):
            c.execute(table.delete().where(table.c.step_id.in_(chunk)))
    for table in (S, D, E, DEL, J):
        c.execute(table.delete().where(table.c.job_id.in_(job_ids)))


def _fence(step: StepState, attempt: int) -> None:
    if step.status.terminal:
        raise StaleWrite(f"step {step.name!r} is {step.status.name}: refused a write for "
                         f"attempt {attempt}")
    if step.attempt != attempt:
        raise StaleWrite(f"step {step.name!r} is at attempt {step.attempt}: refused a write for "
                         f"attempt {attempt}")


#: Writes one batch of child moves: (connection, step_id, attempt, starts, ends).
MoveChildren = Callable[[Connection, str, int, list[ChildChange], list[ChildChange],
                         dict[int, int]], None]


def _apply_progress(c: Connection, log_: _Log, step: StepState, p: ProgressBatch,
                    move: MoveChildren) -> StepState:
    if p.new_children is not None and p.new_children:
        c.execute(_INSERT_CHILDREN, [
            {"step_id": p.step_id, "attempt": p.attempt, "idx": i, "key": k,
             "status": int(ChildStatus.PENDING), "error": None}
            for i, k in enumerate(p.new_children)])
    started = {ch.index: ch.at for ch in p.children if ch.status == ChildStatus.RUNNING}
    ends = [ch for ch in p.children if ch.status != ChildStatus.RUNNING]
    # A child that started and ended in this batch is one write, with both times.
    ended_too = {ch.index: started.pop(ch.index) for ch in ends if ch.index in started}
    starts = [ch for ch in p.children if ch.status == ChildStatus.RUNNING and ch.index in started]
    move(c, p.step_id, p.attempt, starts, ends, ended_too)
    if p.logs:
        _append_logs(c, log_, p.step_id, p.attempt, p.logs)
    if p.documents:
        _put_documents(c, step.job_id, p.documents)
    step = replace(step, children=p.counts, document_count=step.document_count + p.document_delta)
    c.execute(_SET_STEP_COUNTS, _params(step.step_id, _step_values(step),
                                        ("document_count", *_CHILD_COUNT_COLUMNS)))
    return step


def move_children(c: Connection, step_id: str, attempt: int, starts: list[ChildChange],
                   ends: list[ChildChange], started: dict[int, int]) -> None:
    """SQLite: a batch of child moves as executemany (a statement per child is cheap there)."""
    if starts:
        c.execute(_CHILD_STARTS, [{"b_step": step_id, "b_attempt": attempt, "b_idx": ch.index,
                                   "b_status": int(ch.status), "b_at": ch.at} for ch in starts])
    if ends:  # after the starts: a child that started and ended in one batch ends ended
        c.execute(_CHILD_ENDS, [
            {"b_step": step_id, "b_attempt": attempt, "b_idx": ch.index,
             "b_status": int(ch.status), "b_error": ch.error,
             "b_reason": _reason(ch.error), "b_started": started.get(ch.index),
             "b_at": ch.at, "b_bytes": ch.output_bytes, "b_result": ch.result} for ch in ends])


def move_children_pg(c: Connection, step_id: str, attempt: int, starts: list[ChildChange],
                      ends: list[ChildChange], started: dict[int, int]) -> None:
    """PostgreSQL: a batch of child moves as one statement each (arrays, unnest), not a
    statement per child: the database joins them on the unique (step_id, attempt, idx)."""
    key = {"step": step_id, "attempt": attempt}
    if starts:
        c.execute(_PG_CHILD_STARTS, {**key, "idx": [ch.index for ch in starts],
                                     "st": [int(ch.status) for ch in starts],
                                     "at": [ch.at for ch in starts]})
    if ends:  # after the starts: a child that started and ended in one batch ends ended
        c.execute(_PG_CHILD_ENDS, {
            **key, "idx": [ch.index for ch in ends], "st": [int(ch.status) for ch in ends],
            "err": [ch.error for ch in ends],
            "reason": [_reason(ch.error) for ch in ends],
            "started": [started.get(ch.index) for ch in ends], "at": [ch.at for ch in ends],
            "bytes": [ch.output_bytes for ch in ends],
            "res": [ch.result for ch in ends]})


def _reason(error: str | None) -> int | None:
    reason = rules.child_ended_reason(error)
    return None if reason is None else int(reason)


def _transition(c: Connection, log_: _Log, step: StepState, t: StepTransition) -> StepState:
    """Write one step's new status; close out its attempt's children when the attempt ends."""
    rules.check_step_transition(step.status, t.status)
    counts, docs = step.children, step.document_count
    attempt_ends = step.status == StepStatus.RUNNING and (t.status.terminal or t.attempt != step.attempt)
    if attempt_ends and step.attempt > 0:
        counts = _close_out_children(c, step.step_id, step.attempt, t.finished_at or now_us())
        log_.log_keys.add((step.step_id, step.attempt))  # its log followers: the attempt ended
        if t.attempt != step.attempt:
            # A new attempt: first the old attempt's final counts, then the new one from zero.
            log_.step(replace(step, children=counts))
            counts, docs = ChildCounts(), 0
    if t.status.terminal:  # followers of its log, even of an attempt that never started
        log_.log_keys.add((step.step_id, max(step.attempt, 1)))
    new = replace(step, status=t.status, attempt=t.attempt, failure=t.failure,
                  previous_attempt_failure=t.previous_attempt_failure, tolerated=t.tolerated,
                  started_at=t.started_at, finished_at=t.finished_at, children=counts,
                  document_count=docs, attempts=t.attempts)
    c.execute(_SET_STEP_STATUS, _params(new.step_id, _step_values(new), _STEP_STATUS_COLUMNS))
    log_.step(new)
    log_.step_moved(step.status, t.status)
    return new


def _append_logs(c: Connection, log_: _Log, step_id: str, attempt: int,
                 lines: Sequence[LogLine]) -> None:
    """Number an attempt's new output after its head (under the job's lock) and store it."""
    head = c.execute(_LOG_HEAD, {"k": step_id, "b_attempt": attempt}).scalar()
    if head is None:
        c.execute(_NEW_LOG_HEAD, {"step_id": step_id, "attempt": attempt, "head": 0, "first_kept": 1})
        head = 0
    if not lines:
        return
    c.execute(_INSERT_CHUNKS, [
        {"step_id": step_id, "attempt": attempt, "offset": head + n, "child_idx": line.child,
         "stream": line.stream, "text": line.text, "at": line.at}
        for n, line in enumerate(lines, 1)])
    c.execute(_SET_LOG_HEAD, {"k": step_id, "b_attempt": attempt, "b_head": head + len(lines)})
    log_.log_keys.add((step_id, attempt))


def _close_out_children(c: Connection, step_id: str, attempt: int, at: int) -> ChildCounts:
    """Children still PENDING or RUNNING when their attempt ends are CANCELLED; recount them."""
    c.execute(_CLOSE_OUT, {"k": step_id, "b_attempt": attempt, "b_at": at})
    return child_counts(c, step_id, attempt)


def child_counts(c: Connection, step_id: str, attempt: int) -> ChildCounts:
    """The counts of an attempt's child rows, by status (the truth the step's counts mirror)."""
    by: dict[int, int] = dict(c.execute(_CHILD_COUNTS, {"k": step_id, "b_attempt": attempt}).all())
    n = {s: int(by.get(int(s), 0)) for s in ChildStatus}
    return ChildCounts(total=sum(n.values()), pending=n[ChildStatus.PENDING],
                       running=n[ChildStatus.RUNNING], completed=n[ChildStatus.COMPLETED],
                       failed=n[ChildStatus.FAILED], cancelled=n[ChildStatus.CANCELLED])


def _put_documents(c: Connection, job_id: str, puts: Iterable[DocumentPut]) -> None:
    merged: dict[str, DocumentPut] = {}
    for p in puts:
        old = merged.get(p.path)
        merged[p.path] = p if old is None else DocumentPut(
            p.path, old.tags + tuple(t for t in p.tags if t not in old.tags),
            {**old.attrs, **p.attrs})
    paths = list(merged)
    existing: dict[str, Any] = {}
    for i in range(0, len(paths), IN_CHUNK):
        for row in c.execute(select(D.c.id, D.c.path, D.c.tags, D.c.attrs).where(
                D.c.job_id == job_id, D.c.path.in_(paths[i:i + IN_CHUNK]))):
            existing[row.path] = row
    new_rows: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for path, put in merged.items():
        found = existing.get(path)
        if found is None:
            new_rows.append({"job_id": job_id, "path": path, "tags": json.dumps(list(put.tags)),
                             "attrs": json.dumps(dict(put.attrs))})
            continue
        tags = json.loads(found.tags)
        changed.append({"b_id": found.id, "b_tags": json.dumps(tags + [t for t in put.tags
                                                                      if t not in tags]),
                        "b_attrs": json.dumps({**json.loads(found.attrs), **put.attrs})})
    if new_rows:
        c.execute(insert(D), new_rows)
    if changed:
        c.execute(update(D).where(D.c.id == bindparam("b_id"))
                  .values(tags=bindparam("b_tags"), attrs=bindparam("b_attrs")), changed)
