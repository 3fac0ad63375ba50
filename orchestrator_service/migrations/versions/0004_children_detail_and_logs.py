"""children detail (times, error reason, output size, result) and step logs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:25:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('children', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_reason', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('started_at', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('finished_at', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('output_bytes', sa.BigInteger(), server_default='0',
                                      nullable=False))
        batch_op.add_column(sa.Column('result', sa.Text(), nullable=True))
        batch_op.create_index('ix_children_attempt_status', ['step_id', 'attempt', 'status', 'idx'],
                              unique=False)
    op.create_table('log_chunks',
                    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
                    sa.Column('step_id', sa.String(length=32), nullable=False),
                    sa.Column('attempt', sa.Integer(), nullable=False),
                    sa.Column('offset', sa.BigInteger(), nullable=False),
                    sa.Column('child_idx', sa.Integer(), nullable=True),
                    sa.Column('stream', sa.Integer(), nullable=False),
                    sa.Column('text', sa.Text(), nullable=False),
                    sa.Column('at', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('step_id', 'attempt', 'offset'))
    with op.batch_alter_table('log_chunks', schema=None) as batch_op:
        batch_op.create_index('ix_log_chunks_at', ['at'], unique=False)
    op.create_table('log_heads',
                    sa.Column('step_id', sa.String(length=32), nullable=False),
                    sa.Column('attempt', sa.Integer(), nullable=False),
                    sa.Column('head', sa.BigInteger(), nullable=False),
                    sa.Column('first_kept', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('step_id', 'attempt'))


def downgrade() -> None:
    op.drop_table('log_heads')
    op.drop_table('log_chunks')
    with op.batch_alter_table('children', schema=None) as batch_op:
        batch_op.drop_index('ix_children_attempt_status')
        for col in ('result', 'output_bytes', 'finished_at', 'started_at', 'error_reason'):
            batch_op.drop_column(col)
