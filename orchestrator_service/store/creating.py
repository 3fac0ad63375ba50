"""A new job's rows: the request key looked up, the job and its steps inserted."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, insert, literal, select, update

from .. import rules
from ..definitions import JobDefinition
from ..model import StepState
from ..statuses import JobStatus, StepStatus
from .errors import RequestConflict
from .rows import REQUEST_ID_TTL_US, D, J, S, _step_from_values, _step_values
from .values import RequestKey, Rerun, new_id

__all__ = ["insert_job", "seen_request"]


def seen_request(c: Connection, request: RequestKey | None, now: int) -> str | None:
    """The job this request key made in the last day (RequestConflict if it asked for
    something else); a day-old key is freed."""
    if request is None:
        return None
    seen = c.execute(select(J.c.job_id, J.c.created_at, J.c.request_digest)
                     .where(J.c.request_id == request.key)).first()
    if seen is None:
        return None
    if now - seen.created_at < REQUEST_ID_TTL_US:
        if seen.request_digest != request.digest:
            raise RequestConflict(seen.job_id)
        return str(seen.job_id)
    c.execute(update(J).where(J.c.job_id == seen.job_id).values(request_id=None))
    return None


def insert_job(c: Connection, job_id: str, definition: JobDefinition, source_toml: str,
               request: RequestKey | None, rerun: Rerun | None, source: str,
               lease: Callable[[Connection], dict[str, Any]], now: int,
               inputs: Mapping[str, Any],
               schedule: tuple[str, int] | None = None) -> tuple[StepState, ...]:
    """The job's row (PENDING) and its steps' rows; a rerun's carried steps COMPLETED
    (rules.carried_step) and the original's documents copied. The new steps.
    ``schedule``: the schedule and nominal time it stands for (unique together)."""
    n = len(definition.steps)
    carried = {} if rerun is None else {
        name: rules.carried_step(done, rerun.original) for name, done in rerun.carried.items()}
    c.execute(insert(J).values(
        request_id=None if request is None else request.key,
        request_digest=None if request is None else request.digest, source=source, **lease(c),
        job_id=job_id, definition_name=definition.name, description=definition.description,
        definition_toml=source_toml, on_step_failure=definition.on_step_failure.value,
        status=int(JobStatus.PENDING), head_seq=0, created_at=now,
        rerun_of=None if rerun is None else rerun.original, inputs=json.dumps(dict(inputs)),
        schedule_id=None if schedule is None else schedule[0],
        nominal_at=None if schedule is None else schedule[1],
        steps_total=n, steps_pending=n - len(carried), steps_running=0,
        steps_completed=len(carried), steps_failed=0, steps_skipped=0, steps_cancelled=0))
    rows = [
        {"step_id": new_id(), "job_id": job_id, "idx": i, "name": d.name, "type": d.type,
         "depends_on": json.dumps(list(d.depends)), "options": json.dumps(d.options),
         "max_attempts": d.max_attempts, "max_child_failures": d.max_child_failures,
         "timeout_seconds": d.timeout, "concurrency": d.concurrency,
         "status": int(StepStatus.PENDING), "tolerated": False, "attempt": 0,
         "created_at": now, "document_count": 0, "children_total": 0,
         "children_pending": 0, "children_running": 0, "children_completed": 0,
         "children_failed": 0, "children_cancelled": 0,
         "failure_reason": None, "failure_message": None, "previous_failure_reason": None,
         "previous_failure_message": None, "started_at": None, "finished_at": None,
         "carried_from": None, "attempts": "[]"}
        for i, d in enumerate(definition.steps)
    ]
    for row in rows:
        done = carried.get(str(row["name"]))
        if done is not None:
            row.update(_step_values(done), carried_from=done.carried_from)
    c.execute(insert(S), rows)
    if rerun is not None and carried:
        c.execute(insert(D).from_select(
            ["job_id", "path", "tags", "attrs"],
            select(literal(job_id), D.c.path, D.c.tags, D.c.attrs)
            .where(D.c.job_id == rerun.original)))
    return tuple(_step_from_values(r) for r in rows)


