"""The write path's pieces: step transitions, child moves, logs, documents, deletion."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace

from sqlalchemy import (
    Connection,
    select,
)

from .. import rules
from ..model import (
    ChildCounts,
    StepState,
)
from ..rules import StepTransition
from ..statuses import ChildStatus, StepStatus
from ..step_types.base import DocumentPut
from .batched import RowBatches, StoredDocument
from .errors import StaleWrite
from .eventlog import _Log
from .outbox import DEL
from .rows import (
    _CHILD_COUNT_COLUMNS,
    _CHILD_COUNTS,
    _CLOSE_OUT,
    _LOG_HEAD,
    _NEW_LOG_HEAD,
    _SET_LOG_HEAD,
    _SET_STEP_COUNTS,
    _SET_STEP_STATUS,
    _STEP_STATUS_COLUMNS,
    _UNFINISHED_CHILD,
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
from .values import LogLine, ProgressBatch, now_us


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


def _apply_progress(c: Connection, log_: _Log, step: StepState, p: ProgressBatch,
                    rows: RowBatches, transition_follows: bool = False) -> StepState:
    """The batch's children, output and documents; the step's counts (unless a transition
    follows in this transaction: its row write carries them)."""
    if p.new_children:
        rows.insert_children(c, p.step_id, p.attempt, int(ChildStatus.PENDING), p.new_children)
    started = {ch.child: ch.at for ch in p.children if ch.status == ChildStatus.RUNNING}
    ends = [ch for ch in p.children if ch.status != ChildStatus.RUNNING]
    # A child that started and ended in this batch is one write, with both times.
    ended_too = {ch.child: started.pop(ch.child) for ch in ends if ch.child in started}
    starts = [ch for ch in p.children if ch.status == ChildStatus.RUNNING and ch.child in started]
    rows.move_children(c, p.step_id, p.attempt, starts, ends, ended_too)
    if p.logs:
        _append_logs(c, log_, rows, p.step_id, p.attempt, p.logs)
    if p.documents:
        _put_documents(c, rows, step.job_id, p.documents)
    step = replace(step, children=p.counts, document_count=step.document_count + p.document_delta)
    if not transition_follows:
        c.execute(_SET_STEP_COUNTS, _params(step.step_id, _step_values(step),
                                            ("document_count", *_CHILD_COUNT_COLUMNS)))
    return step


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


def _append_logs(c: Connection, log_: _Log, rows: RowBatches, step_id: str, attempt: int,
                 lines: Sequence[LogLine]) -> None:
    """Number an attempt's new output after its head (under the job's lock) and store it."""
    head = c.execute(_LOG_HEAD, {"k": step_id, "b_attempt": attempt}).scalar()
    if head is None:
        c.execute(_NEW_LOG_HEAD, {"step_id": step_id, "attempt": attempt, "head": 0, "first_kept": 1})
        head = 0
    if not lines:
        return
    rows.insert_logs(c, step_id, attempt, head, lines)
    c.execute(_SET_LOG_HEAD, {"k": step_id, "b_attempt": attempt, "b_head": head + len(lines)})
    log_.log_keys.add((step_id, attempt))


def _close_out_children(c: Connection, step_id: str, attempt: int, at: int) -> ChildCounts:
    """Children still PENDING or RUNNING when their attempt ends are CANCELLED; the counts of
    the rows after that. Counted first: most attempts end with every child finished, and
    then there is nothing to close out (the count, not the caller's tally, says so)."""
    by = _by_status(c, step_id, attempt)
    if any(by.get(s) for s in _UNFINISHED_CHILD):
        c.execute(_CLOSE_OUT, {"k": step_id, "b_attempt": attempt, "b_at": at})
        by = _by_status(c, step_id, attempt)
    return _counts(by)


def child_counts(c: Connection, step_id: str, attempt: int) -> ChildCounts:
    """The counts of an attempt's child rows, by status (the truth the step's counts mirror)."""
    return _counts(_by_status(c, step_id, attempt))


def _by_status(c: Connection, step_id: str, attempt: int) -> dict[int, int]:
    return dict(c.execute(_CHILD_COUNTS, {"k": step_id, "b_attempt": attempt}).all())


def _counts(by: dict[int, int]) -> ChildCounts:
    n = {s: int(by.get(int(s), 0)) for s in ChildStatus}
    return ChildCounts(total=sum(n.values()), pending=n[ChildStatus.PENDING],
                       running=n[ChildStatus.RUNNING], completed=n[ChildStatus.COMPLETED],
                       failed=n[ChildStatus.FAILED], cancelled=n[ChildStatus.CANCELLED])


def _put_documents(c: Connection, rows: RowBatches, job_id: str,
                   puts: Iterable[DocumentPut]) -> None:
    """Documents merged into what is stored: tags added (in order, once), attrs overwritten
    key by key."""
    merged: dict[str, DocumentPut] = {}
    for p in puts:
        old = merged.get(p.path)
        merged[p.path] = p if old is None else DocumentPut(
            p.path, old.tags + tuple(t for t in p.tags if t not in old.tags),
            {**old.attrs, **p.attrs})
    stored = rows.documents(c, job_id, list(merged))
    out: list[StoredDocument] = []
    for path, put in merged.items():
        found = stored.get(path)
        if found is None:
            out.append((path, json.dumps(list(put.tags)), json.dumps(dict(put.attrs))))
            continue
        tags_text = found[1]
        if put.tags:  # else the stored text stands (most puts only set attributes)
            tags = json.loads(tags_text)
            tags_text = json.dumps(tags + [t for t in put.tags if t not in tags])
        attrs_text = json.dumps({**json.loads(found[2]), **put.attrs}) if put.attrs else found[2]
        out.append((path, tags_text, attrs_text))
    rows.put_documents(c, job_id, out)
