"""Schedules (jobs.schedule_id + jobs.nominal_at, unique together: one job per nominal
time), webhook subscriptions, and their deliveries (the outbox and its log).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Columns and a unique index, not a constraint: SQLite adds them in place (a batch
    # rebuild of `jobs` would trip the foreign keys of an existing database's steps).
    op.add_column('jobs', sa.Column('schedule_id', sa.String(32), nullable=True))
    op.add_column('jobs', sa.Column('nominal_at', sa.BigInteger(), nullable=True))
    op.create_index('uq_jobs_schedule_nominal', 'jobs', ['schedule_id', 'nominal_at'],
                    unique=True)
    op.create_table(
        'schedules',
        sa.Column('schedule_id', sa.String(32), primary_key=True),
        sa.Column('definition_name', sa.String(200), nullable=False),
        sa.Column('cron', sa.String(200), nullable=False),
        sa.Column('time_zone', sa.String(100), nullable=False),
        sa.Column('inputs', sa.Text(), nullable=False, server_default='{}'),
        sa.Column('overlap', sa.String(20), nullable=False),
        sa.Column('catchup', sa.String(20), nullable=False),
        sa.Column('paused', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('description', sa.Text(), nullable=False, server_default=''),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('next_at', sa.BigInteger(), nullable=True),
        sa.Column('last_nominal_at', sa.BigInteger(), nullable=True),
        sa.Column('last_job_id', sa.String(32), nullable=True),
        sa.Column('skipped', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('last_error', sa.Text(), nullable=False, server_default=''),
    )
    op.create_index('ix_schedules_due', 'schedules', ['paused', 'next_at'])
    op.create_table(
        'subscriptions',
        sa.Column('subscription_id', sa.String(32), primary_key=True),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('secret', sa.String(200), nullable=False),
        sa.Column('events', sa.String(100), nullable=False),
        sa.Column('job_statuses', sa.String(100), nullable=False, server_default=''),
        sa.Column('definition_name', sa.String(200), nullable=False, server_default=''),
        sa.Column('description', sa.Text(), nullable=False, server_default=''),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
    )
    op.create_table(
        'deliveries',
        sa.Column('id', Id, primary_key=True, autoincrement=True),
        sa.Column('delivery_id', sa.String(32), nullable=False, unique=True),
        sa.Column('subscription_id', sa.String(32), nullable=False, index=True),
        sa.Column('event', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.String(32), nullable=False, index=True),
        sa.Column('step_id', sa.String(32), nullable=True),
        sa.Column('step_name', sa.String(200), nullable=False, server_default=''),
        sa.Column('state', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('last_status_code', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('last_error', sa.Text(), nullable=False, server_default=''),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('last_attempt_at', sa.BigInteger(), nullable=True),
        sa.Column('next_at', sa.BigInteger(), nullable=True),
        sa.Column('claimed_by', sa.String(100), nullable=True),
        sa.Column('claim_expires_at', sa.BigInteger(), nullable=True),
    )
    op.create_index('ix_deliveries_due', 'deliveries', ['state', 'next_at'])


def downgrade() -> None:
    op.drop_table('deliveries')
    op.drop_table('subscriptions')
    op.drop_table('schedules')
    op.drop_index('uq_jobs_schedule_nominal', table_name='jobs')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('nominal_at')
        batch_op.drop_column('schedule_id')
