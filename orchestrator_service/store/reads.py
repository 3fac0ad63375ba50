"""Reads: each one transaction on a reader thread, so it sees one snapshot of the job."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, select

from ..codec import Framed
from ..model import Event, JobState, StepState
from ..statuses import ChildStatus, JobStatus, LogStream, StepStatus
from ..step_types.base import Document
from .errors import AmbiguousId, JobNotFound, StepNotFound
from .rows import (
    HEX,
    LH,
    MIN_PREFIX,
    C,
    D,
    J,
    L,
    S,
    _child_record,
    _header,
    _read_events,
    _read_framed,
    _step_state,
)
from .runner import Runner
from .values import ChildRecord, LogChunk, LogPage

__all__ = ["Reads", "read_job"]


class Reads:
    def __init__(self, runner: Runner) -> None:
        self._run = runner.read

    async def get_job(self, job_id: str) -> JobState:
        return await self._run(read_job, job_id)

    async def job_header(self, job_id: str) -> JobState:
        """The job without its steps (raises JobNotFound)."""
        return await self._run(_job_header, job_id)

    async def head(self, job_id: str) -> int:
        """The job's head seq (raises JobNotFound)."""
        return await self._run(_head, job_id)

    async def resume(self, job_id: str, after_seq: int, limit: int, decoded: bool = True,
                     ) -> tuple[int, JobStatus, list[Event | Framed]]:
        """Head seq, status and the first events after ``after_seq``, read in one transaction
        (``decoded=False``: framed for a sender, as ``framed_after``; ``limit=0``: none)."""
        return await self._run(_resume, job_id, after_seq, limit, decoded)

    async def events_after(self, job_id: str, after_seq: int, limit: int) -> list[Event]:
        return await self._run(_read_events, job_id, after_seq, limit)

    async def framed_after(self, job_id: str, after_seq: int, limit: int) -> list[Event | Framed]:
        """events_after for a sender: response bytes, but for a job event last on the page."""
        return await self._run(_read_framed, job_id, after_seq, limit)

    async def list_jobs(self, limit: int, before: int | None = None,
                        status: JobStatus | None = None, name_prefix: str = "",
                        created: tuple[int | None, int | None] = (None, None),
                        ) -> tuple[list[JobState], int | None]:
        """Newest first; ``created`` = (at or after, before) in microseconds."""
        return await self._run(_list_jobs, limit, before, status, name_prefix, created)

    async def unfinished_jobs(self) -> list[str]:
        return await self._run(_unfinished_jobs)

    async def documents(self, job_id: str, tags: Sequence[str] | None = None) -> list[Document]:
        return await self._run(_documents, job_id, tags)

    async def document_paths(self, job_id: str) -> list[str]:
        return await self._run(_document_paths, job_id)

    async def list_documents(self, job_id: str, tags: Sequence[str], limit: int,
                             after: str | None) -> tuple[list[Document], str | None]:
        return await self._run(_list_documents, job_id, tags, limit, after)

    async def resolve_job_id(self, ref: str) -> str:
        """A full job id from itself or a unique prefix of 8 or more characters."""
        return await self._run(_resolve_job_id, ref)

    async def find_step(self, job_id: str, ref: str) -> StepState:
        """A job's step by its step_id or its name (raises StepNotFound)."""
        return await self._run(_find_step, job_id, ref)

    async def step_options(self, job_id: str) -> dict[str, tuple[dict[str, Any], int]]:
        """step_id -> (the step type's validated options, concurrency)."""
        return await self._run(_step_options, job_id)

    async def definition_text(self, job_id: str) -> tuple[str, str]:
        """A job's definition text, and where it came from ("catalog" or "inline")."""
        return await self._run(_definition_text, job_id)

    async def list_children(self, step_id: str, attempt: int, status: ChildStatus | None,
                            failed_first: bool, limit: int,
                            after: tuple[int, int] | None) -> tuple[list[ChildRecord],
                                                                    tuple[int, int] | None]:
        """One page of an attempt's children; ``after`` = (phase, index) of the last one sent."""
        return await self._run(_list_children, step_id, attempt, status, failed_first, limit,
                               after)

    async def read_logs(self, step_id: str, attempt: int, after: int, limit: int,
                        child: int | None) -> LogPage:
        """The attempt's chunks after ``after`` (one child's, or all), with its head, in one read."""
        return await self._run(_read_logs, step_id, attempt, after, limit, child)


def read_job(c: Connection, job_id: str) -> JobState:
    job = c.execute(select(J).where(J.c.job_id == job_id)).first()
    if job is None:
        raise JobNotFound(job_id)
    steps = c.execute(select(S).where(S.c.job_id == job_id).order_by(S.c.idx))
    return replace(_header(job), steps=tuple(_step_state(r) for r in steps))


def _job_header(c: Connection, job_id: str) -> JobState:
    job = c.execute(select(J).where(J.c.job_id == job_id)).first()
    if job is None:
        raise JobNotFound(job_id)
    return _header(job)


def _head(c: Connection, job_id: str) -> int:
    head = c.execute(select(J.c.head_seq).where(J.c.job_id == job_id)).scalar()
    if head is None:
        raise JobNotFound(job_id)
    return int(head)


def _resume(c: Connection, job_id: str, after_seq: int, limit: int,
            decoded: bool) -> tuple[int, JobStatus, list[Event | Framed]]:
    row = c.execute(select(J.c.head_seq, J.c.status).where(J.c.job_id == job_id)).first()
    if row is None:
        raise JobNotFound(job_id)
    head = row[0]
    read = _read_events if decoded else _read_framed
    events: list[Event | Framed] = ([*read(c, job_id, after_seq, limit)]
                                    if after_seq < head and limit > 0 else [])
    return head, JobStatus(row[1]), events


def _list_jobs(c: Connection, limit: int, before: int | None, status: JobStatus | None,
               name_prefix: str, created: tuple[int | None, int | None],
               ) -> tuple[list[JobState], int | None]:
    q = select(J).order_by(J.c.id.desc()).limit(limit + 1)
    if before is not None:
        q = q.where(J.c.id < before)
    if status is not None:
        q = q.where(J.c.status == int(status))
    if name_prefix:
        q = q.where(J.c.definition_name.startswith(name_prefix, autoescape=True))
    if created[0] is not None:
        q = q.where(J.c.created_at >= created[0])
    if created[1] is not None:
        q = q.where(J.c.created_at < created[1])
    jobs = list(c.execute(q))
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return [_header(j) for j in jobs], (jobs[-1].id if more else None)


def _unfinished_jobs(c: Connection) -> list[str]:
    return list(c.execute(select(J.c.job_id).where(
        J.c.status.in_([int(JobStatus.PENDING), int(JobStatus.RUNNING)]))
        .order_by(J.c.id)).scalars())


def _document(r: Any) -> Document:
    return Document(r.path, tuple(json.loads(r.tags)), json.loads(r.attrs))


def _documents(c: Connection, job_id: str, tags: Sequence[str] | None) -> list[Document]:
    rows = c.execute(select(D.c.path, D.c.tags, D.c.attrs).where(D.c.job_id == job_id)
                     .order_by(D.c.path))
    docs = [_document(r) for r in rows]
    if tags is None:
        return docs
    wanted = set(tags)
    return [d for d in docs if wanted.intersection(d.tags)]


def _document_paths(c: Connection, job_id: str) -> list[str]:
    return list(c.execute(select(D.c.path).where(D.c.job_id == job_id).order_by(D.c.path))
                .scalars())


def _list_documents(c: Connection, job_id: str, tags: Sequence[str], limit: int,
                    after: str | None) -> tuple[list[Document], str | None]:
    wanted = set(tags)
    out: list[Document] = []
    if c.execute(select(J.c.job_id).where(J.c.job_id == job_id)).first() is None:
        raise JobNotFound(job_id)
    last = after
    while len(out) <= limit:
        q = select(D.c.path, D.c.tags, D.c.attrs).where(D.c.job_id == job_id)
        if last is not None:
            q = q.where(D.c.path > last)
        rows = list(c.execute(q.order_by(D.c.path).limit(500)))
        out += [d for d in map(_document, rows) if not wanted or wanted.intersection(d.tags)]
        if len(rows) < 500:
            break
        last = rows[-1].path
    if len(out) > limit:
        return out[:limit], out[limit - 1].path
    return out, None


def _step_options(c: Connection, job_id: str) -> dict[str, tuple[dict[str, Any], int]]:
    rows = c.execute(select(S.c.step_id, S.c.options, S.c.concurrency)
                     .where(S.c.job_id == job_id))
    return {r.step_id: (json.loads(r.options), r.concurrency) for r in rows}


def _definition_text(c: Connection, job_id: str) -> tuple[str, str]:
    row = c.execute(select(J.c.definition_toml, J.c.source).where(J.c.job_id == job_id)).first()
    if row is None:
        raise JobNotFound(job_id)
    return str(row.definition_toml), str(row.source)


def _resolve_job_id(c: Connection, ref: str) -> str:
    if c.execute(select(J.c.job_id).where(J.c.job_id == ref)).first() is not None:
        return ref
    if len(ref) < MIN_PREFIX or len(ref) >= 32 or not all(ch in HEX for ch in ref):
        raise JobNotFound(ref)
    found = list(c.execute(select(J.c.job_id).where(J.c.job_id.startswith(ref)).limit(2))
                 .scalars())
    if not found:
        raise JobNotFound(ref)
    if len(found) > 1:
        raise AmbiguousId(f"job id prefix {ref!r} matches more than one job: give more of it")
    return str(found[0])


def _find_step(c: Connection, job_id: str, ref: str) -> StepState:
    if c.execute(select(J.c.job_id).where(J.c.job_id == job_id)).first() is None:
        raise JobNotFound(job_id)
    rows = list(c.execute(select(S).where(S.c.job_id == job_id,
                                          (S.c.step_id == ref) | (S.c.name == ref))))
    if not rows and len(ref) >= MIN_PREFIX and all(ch in HEX for ch in ref):
        rows = list(c.execute(select(S).where(S.c.job_id == job_id,
                                              S.c.step_id.startswith(ref)).limit(2)))
        if len(rows) > 1:
            raise AmbiguousId(f"step id prefix {ref!r} matches more than one step")
    if not rows:
        raise StepNotFound(job_id, ref)
    return _step_state(rows[0])


def _list_children(c: Connection, step_id: str, attempt: int, status: ChildStatus | None,
                   failed_first: bool, limit: int,
                   after: tuple[int, int] | None) -> tuple[list[ChildRecord], tuple[int, int] | None]:
    phase, last = after or (0, -1)
    out: list[ChildRecord] = []
    while len(out) <= limit and phase < 2:
        q = select(C).where(C.c.step_id == step_id, C.c.attempt == attempt,
                            C.c.idx > last).order_by(C.c.idx).limit(limit + 1 - len(out))
        if status is not None:
            q = q.where(C.c.status == int(status))
        if failed_first and phase == 0:
            q = q.where(C.c.status == int(ChildStatus.FAILED))
        elif failed_first:
            q = q.where(C.c.status != int(ChildStatus.FAILED))
        out += [_child_record(r, phase) for r in c.execute(q)]
        if len(out) > limit or not failed_first:
            break
        phase, last = phase + 1, -1
    if len(out) > limit:
        out = out[:limit]
        return out, (out[-1].phase, out[-1].index)
    return out, None


def _read_logs(c: Connection, step_id: str, attempt: int, after: int, limit: int,
               child: int | None) -> LogPage:
    head = c.execute(select(LH.c.head, LH.c.first_kept).where(
        LH.c.step_id == step_id, LH.c.attempt == attempt)).first()
    step = c.execute(select(S.c.status, S.c.attempt).where(S.c.step_id == step_id)).one()
    ended = StepStatus(step.status).terminal or step.attempt > attempt
    if head is None:
        return LogPage(0, 1, ended, [])
    q = (select(L).where(L.c.step_id == step_id, L.c.attempt == attempt, L.c.offset > after)
         .order_by(L.c.offset).limit(limit))
    if child is not None:
        q = q.where(L.c.child_idx == child)
    chunks = [LogChunk(r.offset, r.child_idx, LogStream(r.stream), r.text, r.at)
              for r in c.execute(q)]
    return LogPage(head.head, head.first_kept, ended, chunks)
