"""reruns: jobs.rerun_of and steps.carried_from

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 00:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rerun_of', sa.String(length=32), nullable=True))
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('carried_from', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.drop_column('carried_from')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('rerun_of')
