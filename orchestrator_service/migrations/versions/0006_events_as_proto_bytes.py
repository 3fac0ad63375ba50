"""events: the log stores each event as the contract's JobEvent bytes (events.body); the
JSON payloads of earlier versions are converted, then cleared

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 03:40:00
"""
import json

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    # The conversion uses the model and the encoder of this version: a JSON payload is read as
    # the domain value it held, and written as the bytes a watcher receives.
    from orchestrator_service import wire
    from orchestrator_service.model import Event, job_from_json, step_from_json

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
                         .values(body=wire.encode(event), payload=None))
        last = rows[-1].id


def downgrade() -> None:
    from orchestrator_service import wire
    from orchestrator_service.model import to_json

    bind = op.get_bind()
    events = sa.table('events', sa.column('id', sa.Integer), sa.column('payload', sa.Text),
                      sa.column('body', sa.LargeBinary))
    for r in bind.execute(sa.select(events.c.id, events.c.body)).all():
        event = wire.decode(r.body)
        value = event.step if event.step is not None else event.job
        assert value is not None
        bind.execute(events.update().where(events.c.id == r.id)
                     .values(payload=json.dumps(to_json(value))))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('body')
        batch_op.alter_column('payload', existing_type=sa.Text(), nullable=False)
