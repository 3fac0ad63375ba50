"""Persistence: the one write path, fenced, costing O(what changed) (``core.Store``).

The package's modules: ``connect`` (the engine of a URL, each database's settings),
``errors`` (what it raises, and fault classification), ``values`` (what crosses its edge),
``rows`` (tables, statements, the row codec), ``eventlog`` (one transaction's job row and
events), ``changes`` (the write path's pieces) and ``core`` (the Store: threads, retries,
receipts, availability, reads, writes, leases).
"""

from .changes import child_counts
from .connect import make_engine, pg_connect_args
from .core import Store
from .errors import (
    AmbiguousId,
    JobNotFound,
    JobStillRunning,
    LeaseLost,
    RequestConflict,
    StaleWrite,
    StepNotFound,
    StoreUnavailable,
    storage_reason,
)
from .rows import NOTIFY_CHANNEL, J
from .values import (
    ChildChange,
    ChildRecord,
    LogChunk,
    LogLine,
    LogPage,
    ProgressBatch,
    RequestKey,
    Rerun,
    StepWrite,
    new_id,
    now_us,
)

__all__ = [
    "J", "NOTIFY_CHANNEL", "AmbiguousId", "ChildChange", "ChildRecord", "JobNotFound",
    "JobStillRunning", "LeaseLost", "LogChunk", "LogLine", "LogPage", "ProgressBatch",
    "RequestConflict", "RequestKey", "Rerun", "StaleWrite", "StepNotFound", "StepWrite", "Store",
    "StoreUnavailable", "child_counts", "make_engine", "new_id", "now_us", "pg_connect_args",
    "storage_reason",
]
