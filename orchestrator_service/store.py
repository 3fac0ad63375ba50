"""Persistence: SQLAlchemy models in tables.py, and the one write path.

Every change commits the row update and its event together, with ``seq``
allocated under the job's row lock (SELECT ... FOR UPDATE; SQLite serialises
writers anyway). Committed events are handed to the listener (the broker) on
the event loop, in commit order, and only after the commit.

All database work runs on one worker thread so the event loop never blocks on
I/O and SQLite sees a single writer. Queries are portable SQL (no SQLite-only
constructs) so the same store runs on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import Engine, bindparam, create_engine, event, func, insert, select, update
from sqlalchemy.orm import Session

from . import rules
from .definitions import JobDefinition
from .model import (
    ChildCounts,
    Event,
    Failure,
    JobState,
    StepCounts,
    StepState,
    job_from_json,
    step_from_json,
    to_json,
)
from .rules import Changes
from .statuses import ChildStatus, FailureReason, JobStatus, StepStatus
from .step_types.base import Document, DocumentPut
from .tables import ChildRow, DocumentRow, EventRow, JobRow, StepRow

T = TypeVar("T")
Listener = Callable[[list[Event]], None]
IN_CHUNK = 500  # bound for IN (...) lists


class JobNotFound(LookupError):
    pass


def now_us() -> int:
    return time.time_ns() // 1000


def new_id() -> str:
    return uuid.uuid4().hex


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listener | None = None

    def migrate(self) -> None:
        from .migrations import upgrade_to_head

        upgrade_to_head(self.engine)

    def set_listener(self, listener: Listener) -> None:
        """Receives each transaction's committed events, on the event loop, in commit order."""
        self._listener = listener

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        self._loop = asyncio.get_running_loop()
        return await self._loop.run_in_executor(self._executor, fn, *args)

    def _committed(self, events: list[Event]) -> None:
        if events and self._listener is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._listener, events)

    # -- public, async -------------------------------------------------------

    async def create_job(self, definition: JobDefinition, source_toml: str) -> JobState:
        return await self._run(self._create_job, definition, source_toml)

    async def apply(self, job_id: str, decide: Callable[[JobState], Changes]) -> JobState:
        """Read the job under its lock, let ``decide`` (pure rules) say what changes, write it."""
        return await self._run(self._apply, job_id, decide)

    async def start_children(self, step_id: str, attempt: int, keys: Sequence[str]) -> None:
        await self._run(self._start_children, step_id, attempt, keys)

    async def record_progress(self, progress: ProgressBatch) -> None:
        await self._run(self._record_progress, progress)

    async def get_job(self, job_id: str) -> JobState:
        return await self._run(self._get_job, job_id)

    async def resume(self, job_id: str, after_seq: int,
                     limit: int) -> tuple[int, JobStatus, list[Event]]:
        """Head seq, status and the first events after ``after_seq``, read in one transaction."""
        return await self._run(self._resume, job_id, after_seq, limit)

    async def events_after(self, job_id: str, after_seq: int, limit: int) -> list[Event]:
        return await self._run(self._events_after, job_id, after_seq, limit)

    async def list_jobs(self, limit: int, before: int | None = None,
                        status: JobStatus | None = None) -> tuple[list[JobState], int | None]:
        return await self._run(self._list_jobs, limit, before, status)

    async def documents(self, job_id: str, tags: Sequence[str] | None = None) -> list[Document]:
        return await self._run(self._documents, job_id, tags)

    async def unfinished_jobs(self) -> list[str]:
        return await self._run(self._unfinished_jobs)

    async def step_options(self, job_id: str) -> dict[str, tuple[dict[str, Any], int]]:
        """step_id -> (the step type's validated options, concurrency)."""
        return await self._run(self._step_options, job_id)

    # -- writes --------------------------------------------------------------

    def _create_job(self, definition: JobDefinition, source_toml: str) -> JobState:
        now = now_us()
        job_id = new_id()
        with Session(self.engine) as s, s.begin():
            job = JobRow(job_id=job_id, definition_name=definition.name,
                         description=definition.description, definition_toml=source_toml,
                         on_step_failure=definition.on_step_failure.value,
                         status=JobStatus.PENDING, head_seq=0, created_at=now)
            s.add(job)
            steps = [
                StepRow(step_id=new_id(), job_id=job_id, idx=i, name=d.name, type=d.type,
                        depends_on=json.dumps(list(d.depends)), options=json.dumps(d.options),
                        max_attempts=d.max_attempts, max_child_failures=d.max_child_failures,
                        timeout_seconds=d.timeout, concurrency=d.concurrency,
                        status=StepStatus.PENDING, tolerated=False, attempt=0, created_at=now,
                        document_count=0, children_total=0, children_pending=0,
                        children_running=0, children_completed=0, children_failed=0,
                        children_cancelled=0)
                for i, d in enumerate(definition.steps)
            ]
            s.add_all(steps)
            s.flush()
            events = [self._append(s, job, header=_header(job, [st.status for st in steps]))]
            events += [self._append(s, job, step=_step_state(st)) for st in steps]
            state = _job_state(job, steps)
        self._committed(events)
        return state

    def _apply(self, job_id: str, decide: Callable[[JobState], Changes]) -> JobState:
        with Session(self.engine) as s, s.begin():
            job = self._lock_job(s, job_id)
            steps = self._step_rows(s, job_id)
            changes = decide(_job_state(job, steps))
            events: list[Event] = []
            status_moved = False
            by_id = {st.step_id: st for st in steps}
            for step_id, fields in changes.steps.items():
                row = by_id[step_id]
                if "status" in fields:
                    rules.check_step_transition(StepStatus(row.status), fields["status"])
                    status_moved |= fields["status"] != row.status
                _set_step_fields(row, fields)
                events.append(self._append(s, job, step=_step_state(row)))
            if changes.job:
                rules.check_job_transition(JobStatus(job.status), changes.job["status"])
                _set_job_fields(job, changes.job)
            if status_moved or changes.job:
                events.append(self._append(s, job, header=_header(job, [st.status for st in steps])))
            state = _job_state(job, steps)
        self._committed(events)
        return state

    def _start_children(self, step_id: str, attempt: int, keys: Sequence[str]) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(StepRow, step_id)
            job = self._lock_job(s, row.job_id)
            if row.status != StepStatus.RUNNING or row.attempt != attempt:
                return
            if keys:
                s.execute(insert(ChildRow), [
                    {"step_id": step_id, "attempt": attempt, "idx": i, "key": k,
                     "status": ChildStatus.PENDING, "error": None} for i, k in enumerate(keys)])
            _set_counts(row, ChildCounts(total=len(keys), pending=len(keys)))
            events = [self._append(s, job, step=_step_state(row))]
        self._committed(events)

    def _record_progress(self, p: ProgressBatch) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(StepRow, p.step_id)
            job = self._lock_job(s, row.job_id)
            # A stopped attempt's late progress is dropped: nothing follows a terminal status.
            if row.status != StepStatus.RUNNING or row.attempt != p.attempt:
                return
            if p.children:
                t = ChildRow.__table__
                s.execute(
                    update(t).where(t.c.step_id == p.step_id, t.c.attempt == p.attempt,
                                    t.c.idx == bindparam("b_idx"))
                    .values(status=bindparam("b_status"), error=bindparam("b_error")),
                    [{"b_idx": i, "b_status": st, "b_error": err} for i, st, err in p.children])
            if p.documents:
                _put_documents(s, row.job_id, p.documents)
            _set_counts(row, p.counts)
            row.document_count += p.document_delta
            events = [self._append(s, job, step=_step_state(row))] if p.emit else []
        self._committed(events)

    def _append(self, s: Session, job: JobRow, *, step: StepState | None = None,
                header: JobState | None = None) -> Event:
        job.head_seq += 1
        now = now_us()
        if header is not None:
            header = replace(header, head_seq=job.head_seq)
        s.add(EventRow(job_id=job.job_id, seq=job.head_seq, emitted_at=now,
                       kind="step" if step is not None else "job",
                       payload=json.dumps(to_json(step if step is not None else header))))
        return Event(job.job_id, job.head_seq, now, step=step, job=header)

    @staticmethod
    def _lock_job(s: Session, job_id: str) -> JobRow:
        job = s.scalars(select(JobRow).where(JobRow.job_id == job_id).with_for_update()).first()
        if job is None:
            raise JobNotFound(job_id)
        return job

    @staticmethod
    def _step_rows(s: Session, job_id: str) -> list[StepRow]:
        return list(s.scalars(select(StepRow).where(StepRow.job_id == job_id).order_by(StepRow.idx)))

    # -- reads ---------------------------------------------------------------

    def _get_job(self, job_id: str) -> JobState:
        with Session(self.engine) as s, s.begin():
            job = s.scalars(select(JobRow).where(JobRow.job_id == job_id)).first()
            if job is None:
                raise JobNotFound(job_id)
            return _job_state(job, self._step_rows(s, job_id))

    def _resume(self, job_id: str, after_seq: int,
                limit: int) -> tuple[int, JobStatus, list[Event]]:
        with Session(self.engine) as s, s.begin():
            row = s.execute(select(JobRow.head_seq, JobRow.status)
                            .where(JobRow.job_id == job_id)).first()
            if row is None:
                raise JobNotFound(job_id)
            head = row[0]
            events = self._read_events(s, job_id, after_seq, limit) if after_seq < head else []
            return head, JobStatus(row[1]), events

    def _events_after(self, job_id: str, after_seq: int, limit: int) -> list[Event]:
        with Session(self.engine) as s, s.begin():
            return self._read_events(s, job_id, after_seq, limit)

    @staticmethod
    def _read_events(s: Session, job_id: str, after_seq: int, limit: int) -> list[Event]:
        rows = s.scalars(select(EventRow).where(EventRow.job_id == job_id, EventRow.seq > after_seq)
                         .order_by(EventRow.seq).limit(limit))
        return [_event(r) for r in rows]

    def _list_jobs(self, limit: int, before: int | None,
                   status: JobStatus | None) -> tuple[list[JobState], int | None]:
        with Session(self.engine) as s, s.begin():
            q = select(JobRow).order_by(JobRow.id.desc()).limit(limit + 1)
            if before is not None:
                q = q.where(JobRow.id < before)
            if status is not None:
                q = q.where(JobRow.status == int(status))
            jobs = list(s.scalars(q))
            more = len(jobs) > limit
            jobs = jobs[:limit]
            counts = _statuses_by_job(s, [j.job_id for j in jobs])
            headers = [_header(j, counts.get(j.job_id, [])) for j in jobs]
            return headers, (jobs[-1].id if more else None)

    def _documents(self, job_id: str, tags: Sequence[str] | None) -> list[Document]:
        with Session(self.engine) as s, s.begin():
            rows = s.scalars(select(DocumentRow).where(DocumentRow.job_id == job_id)
                             .order_by(DocumentRow.path))
            docs = [Document(r.path, tuple(json.loads(r.tags)), json.loads(r.attrs)) for r in rows]
        if tags is None:
            return docs
        wanted = set(tags)
        return [d for d in docs if wanted.intersection(d.tags)]

    def _step_options(self, job_id: str) -> dict[str, tuple[dict[str, Any], int]]:
        with Session(self.engine) as s, s.begin():
            return {r.step_id: (json.loads(r.options), r.concurrency)
                    for r in self._step_rows(s, job_id)}

    def _unfinished_jobs(self) -> list[str]:
        with Session(self.engine) as s, s.begin():
            return list(s.scalars(select(JobRow.job_id).where(
                JobRow.status.in_([JobStatus.PENDING, JobStatus.RUNNING])).order_by(JobRow.id)))


@dataclass(frozen=True, slots=True)
class ProgressBatch:
    """Child transitions of one step attempt, written in one transaction."""

    step_id: str
    attempt: int
    children: list[tuple[int, int, str | None]]  # (child index, ChildStatus, error)
    documents: list[DocumentPut]
    counts: ChildCounts
    document_delta: int
    emit: bool  # append a step event carrying the new counts


def _put_documents(s: Session, job_id: str, puts: Iterable[DocumentPut]) -> None:
    merged: dict[str, DocumentPut] = {}
    for p in puts:
        old = merged.get(p.path)
        merged[p.path] = p if old is None else DocumentPut(
            p.path, old.tags + tuple(t for t in p.tags if t not in old.tags),
            {**old.attrs, **p.attrs})
    paths = list(merged)
    existing: dict[str, DocumentRow] = {}
    for i in range(0, len(paths), IN_CHUNK):
        chunk = paths[i:i + IN_CHUNK]
        for row in s.scalars(select(DocumentRow).where(DocumentRow.job_id == job_id,
                                                       DocumentRow.path.in_(chunk))):
            existing[row.path] = row
    new_rows = []
    for path, put in merged.items():
        row = existing.get(path)
        if row is None:
            new_rows.append({"job_id": job_id, "path": path, "tags": json.dumps(list(put.tags)),
                             "attrs": json.dumps(dict(put.attrs))})
            continue
        if put.tags:
            tags = json.loads(row.tags)
            row.tags = json.dumps(tags + [t for t in put.tags if t not in tags])
        if put.attrs:
            row.attrs = json.dumps({**json.loads(row.attrs), **put.attrs})
    if new_rows:
        s.execute(insert(DocumentRow), new_rows)


def _statuses_by_job(s: Session, job_ids: list[str]) -> dict[str, list[StepStatus]]:
    out: dict[str, list[StepStatus]] = {}
    if not job_ids:
        return out
    q = (select(StepRow.job_id, StepRow.status, func.count())
         .where(StepRow.job_id.in_(job_ids)).group_by(StepRow.job_id, StepRow.status))
    for job_id, status, n in s.execute(q):
        out.setdefault(job_id, []).extend([StepStatus(status)] * n)
    return out


def _failure(reason: int | None, message: str | None) -> Failure | None:
    return None if reason is None else Failure(FailureReason(reason), message or "")


def _step_state(r: StepRow) -> StepState:
    return StepState(
        step_id=r.step_id, job_id=r.job_id, index=r.idx, name=r.name, type=r.type,
        depends_on=tuple(json.loads(r.depends_on)), status=StepStatus(r.status),
        max_attempts=r.max_attempts, max_child_failures=r.max_child_failures,
        timeout_seconds=r.timeout_seconds, created_at=r.created_at,
        failure=_failure(r.failure_reason, r.failure_message), tolerated=r.tolerated,
        children=ChildCounts(r.children_total, r.children_pending, r.children_running,
                             r.children_completed, r.children_failed, r.children_cancelled),
        document_count=r.document_count, attempt=r.attempt, started_at=r.started_at,
        finished_at=r.finished_at,
        previous_attempt_failure=_failure(r.previous_failure_reason, r.previous_failure_message),
    )


def _header(j: JobRow, statuses: list[StepStatus] | list[int]) -> JobState:
    return JobState(
        job_id=j.job_id, definition_name=j.definition_name, description=j.description,
        on_step_failure=j.on_step_failure, status=JobStatus(j.status), created_at=j.created_at,
        head_seq=j.head_seq, failure=_failure(j.failure_reason, j.failure_message),
        step_counts=StepCounts.of([StepStatus(x) for x in statuses]),
        started_at=j.started_at, finished_at=j.finished_at)


def _job_state(j: JobRow, steps: list[StepRow]) -> JobState:
    return replace(_header(j, [st.status for st in steps]),
                   steps=tuple(_step_state(st) for st in steps))


def _set_counts(row: StepRow, c: ChildCounts) -> None:
    row.children_total, row.children_pending, row.children_running = c.total, c.pending, c.running
    row.children_completed, row.children_failed = c.completed, c.failed
    row.children_cancelled = c.cancelled


def _set_step_fields(row: StepRow, fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if key == "failure":
            row.failure_reason = None if value is None else int(value.reason)
            row.failure_message = None if value is None else value.message
        elif key == "previous_attempt_failure":
            row.previous_failure_reason = None if value is None else int(value.reason)
            row.previous_failure_message = None if value is None else value.message
        elif key == "children":
            _set_counts(row, value)
        elif key == "status":
            row.status = int(value)
        elif key in {"tolerated", "attempt", "started_at", "finished_at", "document_count"}:
            setattr(row, key, value)
        else:
            raise KeyError(f"not a writable step field: {key}")


def _set_job_fields(job: JobRow, fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if key == "failure":
            job.failure_reason = None if value is None else int(value.reason)
            job.failure_message = None if value is None else value.message
        elif key == "status":
            job.status = int(value)
        elif key in {"started_at", "finished_at"}:
            setattr(job, key, value)
        else:
            raise KeyError(f"not a writable job field: {key}")


def _event(r: EventRow) -> Event:
    data = json.loads(r.payload)
    if r.kind == "step":
        return Event(r.job_id, r.seq, r.emitted_at, step=step_from_json(data))
    return Event(r.job_id, r.seq, r.emitted_at, job=job_from_json(data))

