"""Persistence: the one write path, fenced, costing O(what changed) (``Store``).

The package's modules: ``dialect`` (each database's ways, chosen once from the URL),
``runner`` (threads, retries, receipts, what commits tell), ``health`` (availability),
``holding`` (who runs a job: one process, or leases), ``writes`` and ``creating`` (the
write path), ``reads``, ``eventlog`` (one transaction's job row and events), ``changes``
(the write path's pieces), ``rows`` (tables, statements, the row codec), ``notices``
(pg_notify's typed messages), ``errors`` and ``values`` (what crosses its edge), and
``core`` (the Store, which builds and wires them).
"""

from .changes import child_counts
from .core import Store
from .dialect import Unsupported, database_file, dialect_class, pg_connect_args
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
from .holding import Holding, Leased
from .rows import NOTIFY_CHANNEL, J
from .runner import Listeners
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
    "J", "NOTIFY_CHANNEL", "AmbiguousId", "ChildChange", "ChildRecord", "Holding", "JobNotFound",
    "JobStillRunning", "LeaseLost", "Leased", "Listeners", "LogChunk", "LogLine", "LogPage",
    "ProgressBatch", "RequestConflict", "RequestKey", "Rerun", "StaleWrite", "StepNotFound",
    "StepWrite", "Store", "StoreUnavailable", "Unsupported", "child_counts", "database_file",
    "dialect_class", "new_id", "now_us", "pg_connect_args", "storage_reason",
]
