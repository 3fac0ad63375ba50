"""steps.attempts: every attempt's outcome as the rules decided it (on the wire as
Step.attempts). Steps of earlier versions start with none recorded.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 21:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('steps', sa.Column('attempts', sa.Text(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.drop_column('attempts')
