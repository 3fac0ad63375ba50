"""events: the log stores each event as the contract's JobEvent bytes (events.body); the
JSON payloads of earlier versions are converted, then cleared

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 03:40:00
"""
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from orchestrator_service.model import (
    AttemptRecord,
    ChildCounts,
    Failure,
    JobState,
    StepCounts,
    StepState,
)
from orchestrator_service.statuses import FailureReason, JobStatus, StepStatus

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    # The conversion uses the model and the encoder of this version: a JSON payload is read as
    # the domain value it held, and written as the bytes a watcher receives.
    from orchestrator_service import codec
    from orchestrator_service.model import Event

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body', sa.LargeBinary(), nullable=True))
        batch_op.alter_column('payload', existing_type=sa.Text(), nullable=True)
    bind = op.get_bind()
    events = sa.table('events', sa.column('id', sa.Integer), sa.column('job_id', sa.String),
                      sa.column('seq', sa.BigInteger), sa.column('emitted_at', sa.BigInteger),
                      sa.column('kind', sa.String), sa.column('payload', sa.Text),
                      sa.column('body', sa.LargeBinary))
    last = 0
    while True:
        rows = bind.execute(sa.select(events).where(events.c.id > last, events.c.body.is_(None))
                            .order_by(events.c.id).limit(BATCH)).all()
        if not rows:
            break
        for r in rows:
            data = json.loads(r.payload)
            event = (Event(r.job_id, r.seq, r.emitted_at, step=step_from_json(data))
                     if r.kind == 'step' else
                     Event(r.job_id, r.seq, r.emitted_at, job=job_from_json(data)))
            bind.execute(events.update().where(events.c.id == r.id)
                         .values(body=codec.encode(event), payload=None))
        last = rows[-1].id


def downgrade() -> None:
    from orchestrator_service import codec

    bind = op.get_bind()
    events = sa.table('events', sa.column('id', sa.Integer), sa.column('payload', sa.Text),
                      sa.column('body', sa.LargeBinary))
    for r in bind.execute(sa.select(events.c.id, events.c.body)).all():
        event = codec.decode(r.body)
        value = event.step if event.step is not None else event.job
        assert value is not None
        bind.execute(events.update().where(events.c.id == r.id)
                     .values(payload=json.dumps(to_json(value))))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('body')
        batch_op.alter_column('payload', existing_type=sa.Text(), nullable=False)


# -- the JSON codec of versions before 0006, kept for this migration alone -----------------


def to_json(value: StepState | JobState) -> dict[str, Any]:
    """The value as plain JSON types; field by field (``asdict`` deep-copies, 10x slower)."""
    if isinstance(value, StepState):
        return _step_json(value)
    return {
        "job_id": value.job_id, "definition_name": value.definition_name,
        "description": value.description, "on_step_failure": value.on_step_failure,
        "status": int(value.status), "created_at": value.created_at, "head_seq": value.head_seq,
        "failure": _failure_json(value.failure),
        "step_counts": _counts_json(value.step_counts),
        "started_at": value.started_at, "finished_at": value.finished_at,
        "steps": [_step_json(s) for s in value.steps], "rerun_of": value.rerun_of,
        "inputs": [list(pair) for pair in value.inputs],
        "schedule_id": value.schedule_id, "nominal_time": value.nominal_time,
    }


def _step_json(s: StepState) -> dict[str, Any]:
    return {
        "step_id": s.step_id, "job_id": s.job_id, "index": s.index, "name": s.name,
        "type": s.type, "depends_on": list(s.depends_on), "status": int(s.status),
        "max_attempts": s.max_attempts, "max_child_failures": s.max_child_failures,
        "timeout_seconds": s.timeout_seconds, "created_at": s.created_at,
        "failure": _failure_json(s.failure), "tolerated": s.tolerated,
        "children": _counts_json(s.children), "document_count": s.document_count,
        "attempt": s.attempt, "started_at": s.started_at, "finished_at": s.finished_at,
        "previous_attempt_failure": _failure_json(s.previous_attempt_failure),
        "carried_from": s.carried_from,
        "attempts": [{"attempt": a.attempt, "status": int(a.status), "started_at": a.started_at,
                      "finished_at": a.finished_at, "failure": _failure_json(a.failure)}
                     for a in s.attempts],
    }


def _failure_json(f: Failure | None) -> dict[str, Any] | None:
    return None if f is None else {"reason": int(f.reason), "message": f.message}


def _counts_json(c: ChildCounts | StepCounts) -> dict[str, int]:
    return dict(c.__dict__)


def _failure(d: dict[str, Any] | None) -> Failure | None:
    return None if d is None else Failure(FailureReason(d["reason"]), d["message"])


def step_from_json(d: dict[str, Any]) -> StepState:
    return StepState(**{
        **d,
        "depends_on": tuple(d["depends_on"]),
        "status": StepStatus(d["status"]),
        "failure": _failure(d["failure"]),
        "previous_attempt_failure": _failure(d["previous_attempt_failure"]),
        "children": ChildCounts(**d["children"]),
        "attempts": tuple(AttemptRecord(a["attempt"], StepStatus(a["status"]), a["started_at"],
                                        a["finished_at"], _failure(a["failure"]))
                          for a in d.get("attempts", ())),
    })


def job_from_json(d: dict[str, Any]) -> JobState:
    return JobState(**{
        **d,
        "status": JobStatus(d["status"]),
        "failure": _failure(d["failure"]),
        "step_counts": StepCounts(**d["step_counts"]),
        "steps": tuple(step_from_json(s) for s in d["steps"]),
        "inputs": tuple(tuple(pair) for pair in d.get("inputs", ())),
    })
