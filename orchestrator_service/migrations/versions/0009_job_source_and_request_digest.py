"""jobs.source (catalog | inline: who may rerun it) and jobs.request_digest (what a request id
was used for: the same id asking for something else is refused). Request ids are now stored
scoped by caller (a hash of caller and id), so ids of earlier versions match nothing; they
expired within a day anyway. Jobs made before this version count as inline (admin to rerun).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 17:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: no copy of the jobs table.
    op.add_column('jobs', sa.Column('source', sa.String(length=16), nullable=False,
                                    server_default='inline'))
    op.add_column('jobs', sa.Column('request_digest', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('request_digest')
        batch_op.drop_column('source')
