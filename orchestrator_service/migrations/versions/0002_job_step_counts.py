"""job step counts kept incrementally

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:55:00

A step status write updates the job's counts in the same transaction, so no
write has to recount every step of the job (O(change), not O(steps)).
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

COUNTS = {"pending": 1, "running": 2, "completed": 3, "failed": 4, "skipped": 5, "cancelled": 6}


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('steps_total', sa.Integer(), server_default='0', nullable=False))
        for name in COUNTS:
            batch_op.add_column(sa.Column(f'steps_{name}', sa.Integer(), server_default='0',
                                          nullable=False))
    op.execute("UPDATE jobs SET steps_total = "
               "(SELECT count(*) FROM steps WHERE steps.job_id = jobs.job_id)")
    for name, number in COUNTS.items():
        op.execute(f"UPDATE jobs SET steps_{name} = (SELECT count(*) FROM steps "
                   f"WHERE steps.job_id = jobs.job_id AND steps.status = {number})")


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        for name in ['total', *COUNTS]:
            batch_op.drop_column(f'steps_{name}')
