"""SQLAlchemy tables. The schema itself is owned by Alembic (migrations/)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


# 64-bit ids on PostgreSQL; on SQLite an INTEGER PRIMARY KEY is already 64-bit (and the rowid).
Id = BigInteger().with_variant(Integer(), "sqlite")


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), unique=True)
    definition_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    definition_toml: Mapped[str] = mapped_column(Text)
    on_step_failure: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer, index=True)
    failure_reason: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failure_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    head_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Step counts by status, kept in the same transaction as every step status write.
    steps_total: Mapped[int] = mapped_column(Integer, server_default="0")
    steps_pending: Mapped[int] = mapped_column(Integer, server_default="0")
    steps_running: Mapped[int] = mapped_column(Integer, server_default="0")
    steps_completed: Mapped[int] = mapped_column(Integer, server_default="0")
    steps_failed: Mapped[int] = mapped_column(Integer, server_default="0")
    steps_skipped: Mapped[int] = mapped_column(Integer, server_default="0")
    steps_cancelled: Mapped[int] = mapped_column(Integer, server_default="0")
    rerun_of: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The typed inputs the job runs with (a JSON object; given values and defaults).
    inputs: Mapped[str] = mapped_column(Text, server_default="{}")
    # A client's idempotency key for SubmitJob/RerunJob, scoped by caller (a hash of caller
    # and id): the same key within a day is the same job, if it asks for the same thing.
    request_id: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True,
                                                   index=True)
    request_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Where the definition came from: "catalog" (an operator may rerun it) or "inline" (admin).
    source: Mapped[str] = mapped_column(String(16), server_default="inline")
    # The lease (ownership.py): which replica runs the job, until when, and how many times it
    # changed hands. Every write checks owner and epoch under the job's row lock.
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_epoch: Mapped[int] = mapped_column(BigInteger, server_default="0")
    lease_expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # CancelJob on a replica that does not own the job: the owner carries it out.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # A job a schedule started: which, and the nominal time it stands for. Unique together:
    # one job per (schedule, nominal time), whichever replica fires it.
    schedule_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    nominal_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (Index("uq_jobs_schedule_nominal", "schedule_id", "nominal_at", unique=True),)


class StepRow(Base):
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("job_id", "idx"),)

    step_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(100))
    depends_on: Mapped[str] = mapped_column(Text)  # JSON list
    options: Mapped[str] = mapped_column(Text)  # JSON object
    max_attempts: Mapped[int] = mapped_column(Integer)
    max_child_failures: Mapped[int] = mapped_column(Integer)
    timeout_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    concurrency: Mapped[int] = mapped_column(Integer)
    status: Mapped[int] = mapped_column(Integer)
    failure_reason: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failure_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_failure_reason: Mapped[int | None] = mapped_column(Integer, nullable=True)
    previous_failure_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    tolerated: Mapped[bool] = mapped_column(Boolean, default=False)
    children_total: Mapped[int] = mapped_column(Integer, default=0)
    children_pending: Mapped[int] = mapped_column(Integer, default=0)
    children_running: Mapped[int] = mapped_column(Integer, default=0)
    children_completed: Mapped[int] = mapped_column(Integer, default=0)
    children_failed: Mapped[int] = mapped_column(Integer, default=0)
    children_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    document_count: Mapped[int] = mapped_column(BigInteger, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    carried_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Every attempt so far (rules.attempt_records), as JSON: [[attempt, status, started_at,
    # finished_at, failure reason, failure message], ...]
    attempts: Mapped[str] = mapped_column(Text, server_default="[]")


class ChildRow(Base):
    __tablename__ = "children"
    __table_args__ = (UniqueConstraint("step_id", "attempt", "idx"),
                      # Children by status (ListChildren's filter, failed first), in index order.
                      # Not led by (step_id, attempt): a child's own update must find the unique
                      # (step_id, attempt, idx) index cheaper, with or without statistics.
                      Index("ix_children_status", "step_id", "status", "attempt", "idx"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    # Looked up through the unique (step_id, attempt, idx) index: no index of its own.
    step_id: Mapped[str] = mapped_column(ForeignKey("steps.step_id"))
    attempt: Mapped[int] = mapped_column(Integer)
    idx: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_reason: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    output_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    result: Mapped[str | None] = mapped_column(Text, nullable=True)


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("job_id", "path"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id"), index=True)
    path: Mapped[str] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text)  # JSON list
    attrs: Mapped[str] = mapped_column(Text)  # JSON object


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    emitted_at: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(8))  # "step" | "job"
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)  # before 0006: JSON
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # JobEvent bytes


class MetaRow(Base):
    """Values that belong to one database (the page-token secret)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LogChunkRow(Base):
    """Output of a step attempt, in numbered chunks (offset contiguous per step attempt)."""

    __tablename__ = "log_chunks"
    __table_args__ = (UniqueConstraint("step_id", "attempt", "offset"), Index("ix_log_chunks_at", "at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    step_id: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    child_idx: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stream: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[int] = mapped_column(BigInteger)


class LogHeadRow(Base):
    """Per step attempt: the last offset written, and the first one retention kept."""

    __tablename__ = "log_heads"

    step_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    head: Mapped[int] = mapped_column(BigInteger)
    first_kept: Mapped[int] = mapped_column(BigInteger)


class WriteReceiptRow(Base):
    """A write transaction that committed (PostgreSQL): its id and the job events it wrote.

    After a connection fault the store asks here whether the write it could not hear the
    COMMIT reply of went through, instead of running it again. Kept for an hour."""

    __tablename__ = "write_receipts"
    __table_args__ = (Index("ix_write_receipts_at", "at"),)

    write_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32))
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[int] = mapped_column(BigInteger)


class ScheduleRow(Base):
    """A cron schedule of a catalog definition. ``next_at``: the next nominal time due
    (None while paused); the firing transaction moves it under the row's lock."""

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_due", "paused", "next_at"),)

    schedule_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    definition_name: Mapped[str] = mapped_column(String(200))
    cron: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(100))
    inputs: Mapped[str] = mapped_column(Text, server_default="{}")
    overlap: Mapped[str] = mapped_column(String(20))
    catchup: Mapped[str] = mapped_column(String(20))
    paused: Mapped[bool] = mapped_column(Boolean, server_default=false())
    description: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[int] = mapped_column(BigInteger)
    next_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_nominal_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    skipped: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_error: Mapped[str] = mapped_column(Text, server_default="")


class SubscriptionRow(Base):
    """A webhook: where to POST, signed with ``secret``, on which events."""

    __tablename__ = "subscriptions"

    subscription_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(200))
    events: Mapped[str] = mapped_column(String(100))  # NotifyEvent numbers, comma-separated
    job_statuses: Mapped[str] = mapped_column(String(100), server_default="")
    definition_name: Mapped[str] = mapped_column(String(200), server_default="")
    description: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[int] = mapped_column(BigInteger)


class DeliveryRow(Base):
    """The outbox and the delivery log: one notification to one subscription, inserted in
    the transaction of the status that causes it; claimed by one replica per attempt."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "state", "next_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(32), unique=True)
    subscription_id: Mapped[str] = mapped_column(String(32), index=True)
    event: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    step_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    step_name: Mapped[str] = mapped_column(String(200), server_default="")
    state: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_status_code: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_attempt_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    next_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claim_expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
