"""The store's one constructor: a database's parts, built once from its URL and wired.

``Store.reads`` and ``Store.writes`` are what the engine and the servicer use;
``Store.health`` is what health reports; ``Store.holding`` says who runs a job (this
process alone, or by lease among replicas, ``Store.leased``).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from ..leases import LeaseBook
from .automation import Automation
from .dialect import Dialect, open_dialect
from .health import AvailabilityListener, Health
from .holding import Holding, Leased, Sole
from .reads import Reads
from .runner import Listeners, Runner
from .writes import Writes

__all__ = ["Store"]


class Store:
    def __init__(self, url: str, *, leases: LeaseBook | None = None,
                 listeners: Listeners | None = None,
                 on_availability: AvailabilityListener | None = None,
                 before_write: Callable[[str], None] | None = None) -> None:
        """``leases``: this replica's lease book, on a database replicas share (PostgreSQL);
        None: this process alone runs the database's jobs."""
        self.dialect: Dialect = open_dialect(url, 10.0 if leases is None
                                             else leases.lease_us / 1e6)
        self.listeners = listeners or Listeners()
        if before_write is not None:
            self.listeners.before_write = before_write
        self.health = Health(self.dialect, on_availability)
        self.runner = Runner(self.dialect, self.health, self.listeners)
        #: With a lease book: the lease operations replicas.py runs (None without).
        self.leased = (None if leases is None
                       else Leased(leases, self.dialect, self.runner, self.health))
        self.holding: Holding = self.leased or Sole()
        self.reads = Reads(self.runner)
        self.writes = Writes(self.runner, self.dialect, self.holding)
        self.automation = Automation(self.runner, self.dialect)

    @property
    def engine(self) -> Engine:
        return self.dialect.engine

    @property
    def identity(self) -> str:
        """Which database this is, stably and without secrets (an absolute path for SQLite)."""
        return self.dialect.identity

    def migrate(self) -> None:
        from ..migrations import upgrade_to_head

        upgrade_to_head(self.engine)

    def close(self) -> None:
        self.runner.close()
        self.engine.dispose()
