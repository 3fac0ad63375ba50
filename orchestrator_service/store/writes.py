"""Writes: the one write path, fenced, costing O(what changed).

Every change commits the rows it changes and its events together, with ``seq``
allocated under the job's row lock (SELECT ... FOR UPDATE; SQLite serialises
writers anyway). Committed events are handed to the listener (the broker) on
the event loop, in commit order, and only after the commit.

Fencing: a step write names the attempt it belongs to. A write for another
attempt, to a terminal step, or to a terminal job is refused (``StaleWrite``),
so nothing follows a job's terminal event; and ``Holding.holds`` must say this
process may write the job (with replicas: it holds the job's lease at the epoch
it claimed, ``LeaseLost`` otherwise). When an attempt ends, its last child
changes commit with its new status, and any child still PENDING or RUNNING is
closed out in that same transaction (rules.close_out_child): a step never
leaves an attempt with unfinished children, and the counts in every event
equal the child rows as of its commit.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..definitions import JobDefinition
from ..model import Event, JobState, StepState
from ..rules import Decision
from ..statuses import JobStatus, StepStatus
from . import scheduled
from .changes import _apply_progress, _delete_jobs, _fence, _transition
from .creating import insert_job, seen_request
from .dialect import Dialect
from .errors import JobStillRunning, LeaseLost, Receipt, StaleWrite
from .eventlog import _Log, lock_job
from .holding import Holding
from .reads import read_job
from .rows import (
    _JOB_OF_STEP,
    _STEP,
    _STEP_OF_JOB,
    _STEPS_OF_JOB,
    IN_CHUNK,
    LH,
    J,
    L,
    M,
    S,
    _attempt_logs,
    _step_state,
)
from .runner import Runner
from .scheduled import Fired, Firing
from .values import ProgressBatch, RequestKey, Rerun, StepWrite, new_id, now_us

__all__ = ["Writes"]

Recovered = tuple[Any, set[tuple[str, int]]]


def _steps_of(c: Connection, job_id: str, ids: list[str]) -> list[Any]:
    """These steps' rows (those of this job): the statements built once, not per write."""
    if len(ids) == 1:
        return list(c.execute(_STEP_OF_JOB, {"k": job_id, "s": ids[0]}))
    return [r for i in range(0, len(ids), IN_CHUNK)
            for r in c.execute(_STEPS_OF_JOB, {"k": job_id, "ids": ids[i:i + IN_CHUNK]})]


def _holds(states: Mapping[str, StepState], after: tuple[str, StepStatus]) -> bool:
    """Whether a write's ``after`` holds: that step (of this job) has that status here."""
    step = states.get(after[0])
    return step is not None and step.status == after[1]


class Writes:
    def __init__(self, runner: Runner, dialect: Dialect, holding: Holding) -> None:
        self._runner = runner
        self._dialect = dialect
        self._holding = holding
        self._secret: bytes | None = None

    async def create_job(self, definition: JobDefinition, source_toml: str,
                         request: RequestKey | None = None, source: str = "inline",
                         rerun: Rerun | None = None, inputs: Mapping[str, Any] | None = None,
                         ) -> tuple[JobState, bool]:
        """The new job, and True; or, for a request key seen in the last day, that job and
        False (RequestConflict when that key asked for something else). A rerun's carried
        steps are COMPLETED, its documents copied."""
        job_id = new_id()  # once, outside the retries: a retried create makes this job or none
        since = time.monotonic()  # before any try's insert set the lease

        def recover(c: Connection, r: Receipt) -> Recovered:
            self._holding.take(job_id, 1, since)
            return (read_job(c, r.job_id), True), set()

        try:
            return await self._runner.write("create_job", self._create_job, job_id, definition,
                                            source_toml, request, rerun, source, inputs or {},
                                            wait=False, recover=recover)
        except IntegrityError:
            if request is None:
                raise
            # Another replica created it between our look-up and insert: it is the job.
            return await self._runner.write("create_job", self._create_job, new_id(),
                                            definition, source_toml, request, rerun, source,
                                            inputs or {}, wait=False)

    async def write_steps(self, job_id: str, writes: Sequence[StepWrite]) -> list[StepState]:
        """Step transitions of one job in one transaction; each fenced by its attempt."""
        def recover(c: Connection, r: Receipt) -> Recovered:
            steps = [_step_state(c.execute(_STEP, {"k": w.step_id}).one()) for w in writes]
            return steps, _attempt_logs(steps)

        return await self._runner.write("write_steps", self._write_steps, job_id, writes,
                                        key=job_id, recover=recover)

    async def decide_job(self, job_id: str, decide: Callable[[JobState], Decision]) -> JobState:
        """Read the whole job under its lock, let ``decide`` (a rule) say what changes, write it.

        For the decisions taken once per job (start, stop, cancel, finish, recovery).
        """
        def recover(c: Connection, r: Receipt) -> Recovered:
            job = read_job(c, job_id)
            return job, _attempt_logs(job.steps)

        return await self._runner.write("decide_job", self._decide_job, job_id, decide,
                                        key=job_id, recover=recover)

    async def fire_schedule(self, schedule_id: str, now: int, firing: Firing,
                            force: bool = False) -> Fired:
        """The schedule's due runs (``force``: one now), their jobs held by this process.
        Its own retry is safe without a receipt: a fire that committed moved ``next_at``."""
        fired = await self._runner.write("fire_schedule", self._fire_schedule, schedule_id, now,
                                         firing, force, wait=False)
        return fired

    async def record_progress(self, progress: ProgressBatch) -> None:
        def recover(c: Connection, r: Receipt) -> Recovered:
            return None, {(progress.step_id, progress.attempt)}

        await self._runner.write("record_progress", self._record_progress, progress,
                                 key=progress.step_id, recover=recover)

    async def page_secret(self) -> bytes:
        """This database's secret for signing page tokens (made on first use)."""
        if self._secret is None:
            try:
                self._secret = await self._runner.write("page_secret", self._page_secret)
            except IntegrityError:  # another replica made it first: read theirs
                self._secret = await self._runner.write("page_secret", self._page_secret)
        return self._secret

    async def delete_job(self, job_id: str) -> None:
        """Delete a terminal job and everything it made; a job not terminal yet raises
        JobStillRunning (checked under the job's lock)."""
        await self._runner.write("delete_job", self._delete_job, job_id, wait=False)
        await self._deleted([job_id])

    async def delete_finished_before(self, before_us: int, batch: int = 100) -> list[str]:
        """Delete up to ``batch`` terminal jobs that finished before ``before_us``; their ids."""
        ids = await self._runner.write("retain_jobs", self._delete_finished_before, before_us,
                                       batch, wait=False)
        await self._deleted(ids)
        return ids

    async def delete_old_logs(self, before_us: int, batch: int = 1000) -> int:
        """Retention: delete chunks written before ``before_us``, in small transactions."""
        total = 0
        while True:
            n = await self._runner.write("delete_old_logs", self._delete_old_logs, before_us,
                                         batch)
            total += n
            if n < batch:
                return total

    async def _deleted(self, job_ids: list[str]) -> None:
        listener = self._runner.listeners.deleted
        if listener is not None and job_ids:
            listener(job_ids)
        await self._holding.tell_deleted(job_ids)

    # -- the transactions (on a writer thread) -----------------------------------

    def _log(self, c: Connection, job_id: str, fence: bool = True) -> _Log:
        """The job's row, locked and fenced: only a process that holds the job may write it.
        Fenced, the lock extends the job's lease: its commit (``_committed``) renews it."""
        since = time.monotonic()
        job = self._holding.lock(c, job_id) if fence else lock_job(c, job_id)
        if fence and not self._holding.holds(job_id, job.lease_owner, job.lease_epoch):
            raise LeaseLost(f"job {job_id} is run by another replica now (lease "
                            f"{job.lease_owner} epoch {job.lease_epoch})")
        self._runner.check_receipt(c)
        log_ = _Log(c, job, self._holding.owner, self._runner.write_id, self._dialect.notify)
        log_.extended_since = since if fence else None
        return log_

    def _committed(self, log_: _Log, events: list[Event]) -> None:
        if log_.extended_since is not None:
            self._holding.extended(log_.job_id, log_.extended_since)
        self._runner.committed(events, log_.log_keys)

    def _create_job(self, job_id: str, definition: JobDefinition, source_toml: str,
                    request: RequestKey | None, rerun: Rerun | None,
                    source: str, inputs: Mapping[str, Any]) -> tuple[JobState, bool]:
        since = time.monotonic()
        with self._dialect.engine.begin() as c:
            self._runner.check_receipt(c)  # no lock to take yet: a first try in flight meets the insert
            now = now_us()
            seen = seen_request(c, request, now)
            if seen is not None:
                return read_job(c, seen), False
            steps = insert_job(c, job_id, definition, source_toml, request, rerun, source,
                               self._holding.lease_values, now, inputs)
            log_ = self._log(c, job_id, fence=False)  # its lease is the one inserted above
            events, state = log_.created(steps)
        self._holding.take(job_id, 1, since)  # held once committed: a renewal never sees it uncommitted
        self._committed(log_, events)
        return state, True

    def _write_steps(self, job_id: str, writes: Sequence[StepWrite]) -> list[StepState]:
        with self._dialect.engine.begin() as c:
            log_ = self._log(c, job_id)
            log_.refuse_if_terminal()
            out = []
            # Every step written or named by an ``after``, read once (a group may write one
            # step more than once).
            ids = list(dict.fromkeys([*(w.step_id for w in writes),
                                      *(w.after[0] for w in writes if w.after is not None)]))
            states = {r.step_id: _step_state(r) for r in _steps_of(c, job_id, ids)}
            for w in writes:
                current = states.get(w.step_id)
                if current is None:
                    raise StaleWrite(f"step {w.step_id} is not a step of job {job_id}")
                if w.after is not None and not _holds(states, w.after):
                    out.append(current)
                    continue
                _fence(current, w.attempt)
                if w.progress is not None:
                    moved = _apply_progress(c, log_, current, w.progress, self._dialect.rows,
                                            transition_follows=w.decide is not None)
                    if w.decide is None and moved != current:
                        log_.step(moved)  # progress alone: its event (output alone has none)
                    current = moved
                if w.decide is not None:
                    current = _transition(c, log_, current, w.decide(current))
                states[w.step_id] = current
                out.append(current)
            events = log_.flush()
        self._committed(log_, events)
        return out

    def _decide_job(self, job_id: str, decide: Callable[[JobState], Decision]) -> JobState:
        with self._dialect.engine.begin() as c:
            log_ = self._log(c, job_id)
            steps = {r.step_id: _step_state(r) for r in
                     c.execute(select(S).where(S.c.job_id == job_id).order_by(S.c.idx))}
            decision = decide(replace(log_.state(), steps=tuple(steps.values())))
            if not decision.empty:
                log_.refuse_if_terminal()
            for t in decision.steps:
                steps[t.step_id] = _transition(c, log_, steps[t.step_id], t)
            if decision.job is not None:
                log_.set_job(decision.job)
            events = log_.flush()
            state = replace(log_.state(), steps=tuple(steps.values()))
        self._committed(log_, events)
        return state

    def _fire_schedule(self, schedule_id: str, now: int, firing: Firing, force: bool) -> Fired:
        since = time.monotonic()
        with self._dialect.engine.begin() as c:
            fired = scheduled.fire(c, schedule_id, now, firing, force,
                                   lambda c_, job_id: self._log(c_, job_id, fence=False),
                                   self._holding.lease_values)
        for job in fired.jobs:
            self._holding.take(job.job_id, 1, since)
        self._runner.committed(list(fired.events), set(fired.logs))
        return fired

    def _record_progress(self, p: ProgressBatch) -> None:
        with self._dialect.engine.begin() as c:
            job_id = c.execute(_JOB_OF_STEP, {"k": p.step_id}).scalar_one()
            log_ = self._log(c, job_id)
            log_.refuse_if_terminal()
            step = _step_state(c.execute(_STEP, {"k": p.step_id}).one())
            _fence(step, p.attempt)
            moved = _apply_progress(c, log_, step, p, self._dialect.rows)
            if moved != step:  # output alone changes no state: no event (its log followers
                log_.step(moved)  # are told through the log keys)
            events = log_.flush()
        self._committed(log_, events)

    def _page_secret(self) -> bytes:
        with self._dialect.engine.begin() as c:
            value = c.execute(select(M.c.value).where(M.c.key == "page_token_secret")).scalar()
            if value is None:
                value = secrets.token_hex(32)
                c.execute(insert(M).values(key="page_token_secret", value=value))
            return bytes.fromhex(value)

    def _delete_job(self, job_id: str) -> None:
        with self._dialect.engine.begin() as c:
            job = lock_job(c, job_id)
            if not JobStatus(job.status).terminal:
                raise JobStillRunning(job_id, JobStatus(job.status))
            _delete_jobs(c, [job_id])

    def _delete_finished_before(self, before_us: int, batch: int) -> list[str]:
        with self._dialect.engine.begin() as c:
            ids = list(c.execute(select(J.c.job_id).where(
                J.c.status.in_([int(s) for s in JobStatus if s.terminal]),
                J.c.finished_at < before_us).order_by(J.c.id).limit(batch)).scalars())
            _delete_jobs(c, ids)
            return ids

    def _delete_old_logs(self, before_us: int, batch: int) -> int:
        with self._dialect.engine.begin() as c:
            rows = list(c.execute(select(L.c.id, L.c.step_id, L.c.attempt, L.c.offset)
                                  .where(L.c.at < before_us).order_by(L.c.id).limit(batch)))
            if not rows:
                return 0
            kept: dict[tuple[str, int], int] = {}
            for r in rows:
                key = (r.step_id, r.attempt)
                kept[key] = max(kept.get(key, 0), r.offset + 1)
            c.execute(L.delete().where(L.c.id.in_([r.id for r in rows])))
            for (step_id, attempt), first in kept.items():
                c.execute(update(LH).where(LH.c.step_id == step_id, LH.c.attempt == attempt,
                                           LH.c.first_kept < first).values(first_kept=first))
            return len(rows)
