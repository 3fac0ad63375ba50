"""Schedules in the store: their rows, and the transaction that fires one.

``fire`` locks the schedule's row (FOR UPDATE SKIP LOCKED on PostgreSQL: a replica
firing it is passed over, not waited for), asks ``schedules.plan`` what is due, inserts
the jobs (each naming the schedule and its nominal time: unique together) and moves the
schedule's ``next_at``, all in one transaction. A replica that fires the same due time
after it finds ``next_at`` moved on; the unique key is the backstop.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, insert, select, update

from ..definitions import JobDefinition
from ..model import Event, JobState
from ..schedules import Catchup, Overlap, ScheduleSpec, next_after, plan
from ..statuses import JobStatus
from ..tables import ScheduleRow
from .creating import insert_job
from .eventlog import _Log
from .rows import J
from .values import new_id

__all__ = ["Fired", "Firing", "ScheduleRecord"]

SCH = cast(Table, ScheduleRow.__table__)
UNFINISHED = [int(s) for s in JobStatus if not s.terminal]


@dataclass(frozen=True)
class ScheduleRecord:
    schedule_id: str
    spec: ScheduleSpec
    created_at: int
    next_at: int | None
    last_nominal_at: int | None
    last_job_id: str
    last_job_status: JobStatus | None
    skipped: int
    last_error: str


@dataclass(frozen=True)
class Firing:
    """What a due schedule starts, resolved before its transaction: the catalog's
    definition and the checked inputs; or why it cannot start (``error``)."""

    definition: JobDefinition | None
    text: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class Fired:
    jobs: tuple[JobState, ...] = ()
    #: unfinished jobs of the schedule to cancel (overlap cancel_previous)
    cancel: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    logs: frozenset[tuple[str, int]] = frozenset()
    #: nominal times passed over by this firing (overlap skip, missed catch-up, no definition)
    skipped: int = 0


def spec_of(r: Any) -> ScheduleSpec:
    return ScheduleSpec(r.definition_name, r.cron, r.time_zone, Overlap(r.overlap),
                        Catchup(r.catchup), json.loads(r.inputs), bool(r.paused), r.description)


def _record(r: Any) -> ScheduleRecord:
    status = getattr(r, "last_status", None)
    return ScheduleRecord(r.schedule_id, spec_of(r), r.created_at, r.next_at, r.last_nominal_at,
                          r.last_job_id or "", None if status is None else JobStatus(status),
                          r.skipped, r.last_error)


def _with_last_status() -> Any:
    return (select(SCH, J.c.status.label("last_status"))
            .outerjoin(J, J.c.job_id == SCH.c.last_job_id))


def create_schedule(c: Connection, spec: ScheduleSpec, now: int) -> ScheduleRecord:
    schedule_id = new_id()
    c.execute(insert(SCH).values(
        schedule_id=schedule_id, definition_name=spec.definition_name, cron=spec.cron,
        time_zone=spec.time_zone, inputs=json.dumps(spec.inputs), overlap=spec.overlap.value,
        catchup=spec.catchup.value, paused=spec.paused, description=spec.description,
        created_at=now, next_at=None if spec.paused else next_after(spec.cron, spec.time_zone, now),
        skipped=0, last_error=""))
    return get_schedule(c, schedule_id)


def get_schedule(c: Connection, schedule_id: str) -> ScheduleRecord:
    row = c.execute(_with_last_status().where(SCH.c.schedule_id == schedule_id)).first()
    if row is None:
        raise LookupError(schedule_id)
    return _record(row)


def list_schedules(c: Connection) -> list[ScheduleRecord]:
    return [_record(r) for r in c.execute(
        _with_last_status().order_by(SCH.c.created_at, SCH.c.schedule_id))]


def set_paused(c: Connection, schedule_id: str, paused: bool, now: int) -> ScheduleRecord:
    """Paused: nothing is due. Resumed: due from the next nominal time after now (the
    paused stretch is not caught up)."""
    row = c.execute(select(SCH).where(SCH.c.schedule_id == schedule_id).with_for_update()).first()
    if row is None:
        raise LookupError(schedule_id)
    if bool(row.paused) != paused:
        c.execute(update(SCH).where(SCH.c.schedule_id == schedule_id).values(
            paused=paused, next_at=None if paused else next_after(row.cron, row.time_zone, now)))
    return get_schedule(c, schedule_id)


def delete_schedule(c: Connection, schedule_id: str) -> bool:
    """Its jobs stay (naming a schedule that is gone)."""
    return c.execute(delete(SCH).where(SCH.c.schedule_id == schedule_id)).rowcount > 0


def due_schedules(c: Connection, now: int) -> list[ScheduleRecord]:
    """The schedules due at ``now``."""
    return [_record(r) for r in c.execute(
        _with_last_status().where(SCH.c.paused.is_(False), SCH.c.next_at <= now))]


def fire(c: Connection, schedule_id: str, now: int, firing: Firing, force: bool,
         open_log: Callable[[Connection, str], _Log],
         lease: Callable[[Connection], dict[str, Any]]) -> Fired:
    """The schedule's due runs at ``now`` (``force``: one run now, whatever is due)."""
    row = c.execute(select(SCH).where(SCH.c.schedule_id == schedule_id)
                    .with_for_update(skip_locked=not force)).first()
    if row is None:
        if force:
            raise LookupError(schedule_id)
        return Fired()  # gone, or being fired by another replica right now
    spec = spec_of(row)
    running = tuple(c.execute(select(J.c.job_id).where(
        J.c.schedule_id == schedule_id, J.c.status.in_(UNFINISHED))).scalars())
    if force:
        start: tuple[int, ...] = (now,)
        skipped, next_at, cancel = 0, row.next_at, ()
    elif row.paused or row.next_at is None or row.next_at > now:
        return Fired()
    else:
        p = plan(spec, row.next_at, now, len(running))
        start, skipped, next_at = p.start, p.skipped, p.next_at
        cancel = running if p.cancel_running else ()
    error = firing.error
    if start and firing.definition is None:
        skipped, start, cancel = skipped + len(start), (), ()
    jobs, events, logs = [], [], set()
    for nominal in start:
        assert firing.definition is not None
        job_id = new_id()
        steps = insert_job(c, job_id, firing.definition, firing.text, None, None, "catalog",
                           lease, now, firing.inputs, (schedule_id, nominal))
        log_ = open_log(c, job_id)
        written, job = log_.created(steps)
        events += written
        logs |= log_.log_keys
        jobs.append(job)
    values: dict[str, Any] = {"skipped": SCH.c.skipped + skipped, "last_error": error,
                              "next_at": next_at}
    if jobs:
        values.update(last_nominal_at=start[-1], last_job_id=jobs[-1].job_id)
    c.execute(update(SCH).where(SCH.c.schedule_id == schedule_id).values(**values))
    return Fired(tuple(jobs), cancel, tuple(events), frozenset(logs), skipped)
