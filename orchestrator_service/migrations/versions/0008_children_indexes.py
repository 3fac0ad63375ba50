"""children: the status index no longer leads with (step_id, attempt), and the step_id index
(a prefix of the unique index) goes: a child's update by (step_id, attempt, idx) is an exact
lookup on PostgreSQL even before its statistics exist

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 05:30:00
"""
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Index statements need no copy of the table, on either database.
    op.drop_index('ix_children_attempt_status', table_name='children')
    op.drop_index('ix_children_step_id', table_name='children')
    op.create_index('ix_children_status', 'children', ['step_id', 'status', 'attempt', 'idx'],
                    unique=False)


def downgrade() -> None:
    with op.batch_alter_table('children', schema=None) as batch_op:
        batch_op.drop_index('ix_children_status')
        batch_op.create_index(batch_op.f('ix_children_step_id'), ['step_id'], unique=False)
        batch_op.create_index('ix_children_attempt_status', ['step_id', 'attempt', 'status', 'idx'],
                              unique=False)
