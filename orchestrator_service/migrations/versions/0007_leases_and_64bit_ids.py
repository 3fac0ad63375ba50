"""replicas: job leases (owner, epoch, expiry), cross-replica cancel requests, 64-bit ids

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 05:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

ID_TABLES = ('jobs', 'children', 'documents', 'events', 'log_chunks')


def upgrade() -> None:
    # Plain ADD COLUMN (both databases have it): a batch on SQLite would copy the jobs table,
    # and dropping the old one fails its foreign keys.
    op.add_column('jobs', sa.Column('lease_owner', sa.String(length=100), nullable=True))
    op.add_column('jobs', sa.Column('lease_epoch', sa.BigInteger(), server_default='0',
                                    nullable=False))
    op.add_column('jobs', sa.Column('lease_expires_at', sa.BigInteger(), nullable=True))
    op.add_column('jobs', sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(),
                                    nullable=False))
    if op.get_bind().dialect.name == 'postgresql':
        # SQLite's INTEGER PRIMARY KEY is 64-bit already; PostgreSQL's SERIAL is not.
        for table in ID_TABLES:
            op.alter_column(table, 'id', type_=sa.BigInteger(), existing_type=sa.Integer())
            op.execute(f"ALTER SEQUENCE IF EXISTS {table}_id_seq AS bigint")


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('cancel_requested')
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('lease_epoch')
        batch_op.drop_column('lease_owner')
