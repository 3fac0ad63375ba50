"""idempotent submit (jobs.request_id) and per-database settings (meta)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 00:10:00

``meta`` holds values that belong to one database, such as the secret that
signs its page tokens (made at first start, never sent to anyone).
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_request_id'), ['request_id'], unique=True)
    op.create_table('meta',
                    sa.Column('key', sa.String(length=100), nullable=False),
                    sa.Column('value', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('key'))


def downgrade() -> None:
    op.drop_table('meta')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_request_id'))
        batch_op.drop_column('request_id')
