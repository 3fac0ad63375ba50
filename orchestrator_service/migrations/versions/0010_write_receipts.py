"""write_receipts: which write transactions committed (an ambiguous COMMIT is looked up, not
run twice). Used on PostgreSQL; created on both so one schema serves both.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 20:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'write_receipts',
        sa.Column('write_id', sa.String(length=32), primary_key=True),
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('first_seq', sa.BigInteger(), nullable=False),
        sa.Column('last_seq', sa.BigInteger(), nullable=False),
        sa.Column('at', sa.BigInteger(), nullable=False),
    )
    op.create_index('ix_write_receipts_at', 'write_receipts', ['at'])


def downgrade() -> None:
    op.drop_index('ix_write_receipts_at', table_name='write_receipts')
    op.drop_table('write_receipts')
