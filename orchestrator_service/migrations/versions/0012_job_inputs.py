"""jobs.inputs: the typed inputs a job runs with (a JSON object; jobs of earlier
versions had none).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 06:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('inputs', sa.Text(), nullable=False, server_default='{}'))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('inputs')
