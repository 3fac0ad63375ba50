"""Who runs a job: one process (SQLite) or the replica holding its lease (PostgreSQL).

``Holding`` is asked instead of checking which database this is: the store fences every
write with ``holds``, the engine asks ``runs_here``, ``fresh`` and ``give_back``. ``Sole``:
this process runs every job (the file lock in ownership.py keeps it alone). ``Leased``: the
jobs whose lease this replica holds (leases.py), with the lease operations replicas.py runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Row
from sqlalchemy.exc import DBAPIError

from .. import leases
from ..leases import START_MARGIN, Claimed, LeaseBook, Renewal
from . import notices
from .dialect import Dialect
from .errors import JobNotFound
from .eventlog import lock_job
from .health import Health
from .rows import R
from .runner import Runner
from .values import now_us

__all__ = ["Holding", "Leased", "Sole"]

RECEIPT_TTL_US = 3600 * 1_000_000  # a write's receipt outlives any retry of it by far


class Holding(Protocol):
    #: Named in pg_notify as the writer of a commit (None: nobody else listens).
    owner: str | None
    #: Other processes write this database too (what they say may be missed: look).
    others_write: bool

    def marker(self, identity: str) -> str:
        """What marks this process's commands on this machine (never another's)."""
    def lock(self, c: Connection, job_id: str) -> Row[Any]:
        """The job's row, locked for a write of it (its lease extended if held here)."""
    def extended(self, job_id: str, since: float) -> None:
        """A write that locked the job after ``since`` (monotonic) committed."""
    def holds(self, job_id: str, owner: str | None, epoch: int) -> bool:
        """Under the job's row lock: may this process write the job?"""
    def runs_here(self, job_id: str) -> bool: ...
    def take(self, job_id: str, epoch: int, since: float) -> None:
        """Held from now on, its lease set by a statement begun after ``since``."""
    def drop(self, job_id: str) -> None: ...
    def fresh(self, job_id: str, margin: float = START_MARGIN) -> bool:
        """Safe to start a command of the job now (it cannot change hands before long)."""
    def lease_values(self, c: Connection) -> dict[str, Any]:
        """The columns a job created here starts with."""
    @property
    def recovers_at_start(self) -> bool:
        """Whether a starting process recovers every unfinished job itself."""
    async def give_back(self, job_id: str, epoch: int) -> None: ...
    async def request_cancel(self, job_id: str) -> Claimed | None:
        """Cancel a job held elsewhere: recorded for its holder (None), or taken here."""
    async def tell_deleted(self, job_ids: Sequence[str]) -> None: ...


class Sole:
    """One process holds every job of its database."""

    owner: str | None = None
    others_write = False
    recovers_at_start = True

    def marker(self, identity: str) -> str:
        return identity

    def lock(self, c: Connection, job_id: str) -> Row[Any]:
        return lock_job(c, job_id)

    def extended(self, job_id: str, since: float) -> None:
        pass

    def holds(self, job_id: str, owner: str | None, epoch: int) -> bool:
        return True

    def runs_here(self, job_id: str) -> bool:
        return True

    def take(self, job_id: str, epoch: int, since: float) -> None:
        pass

    def drop(self, job_id: str) -> None:
        pass

    def fresh(self, job_id: str, margin: float = START_MARGIN) -> bool:
        return True

    def lease_values(self, c: Connection) -> dict[str, Any]:
        return {}

    async def give_back(self, job_id: str, epoch: int) -> None:
        pass

    async def request_cancel(self, job_id: str) -> Claimed | None:
        return Claimed(job_id, 1, False, True)  # nobody else holds it: cancel here

    async def tell_deleted(self, job_ids: Sequence[str]) -> None:
        pass


class Leased:
    """The jobs this replica holds a lease on, and the lease operations (each on the lease
    thread, on a connection of its own)."""

    others_write = True
    recovers_at_start = False  # jobs are taken over by the lease sweep (replicas.py)

    def __init__(self, book: LeaseBook, dialect: Dialect, runner: Runner, health: Health) -> None:
        self.book = book
        self.owner: str | None = book.owner
        self._dialect = dialect
        self._runner = runner
        self._health = health
        self._next_prune = 0.0

    def marker(self, identity: str) -> str:
        return f"{identity}|{self.book.name}"  # replicas on one machine: each its own commands

    def lock(self, c: Connection, job_id: str) -> Row[Any]:
        epoch = self.book.epoch(job_id)
        if epoch is None:
            return lock_job(c, job_id)  # not ours: nothing to extend (the fence refuses)
        job = leases.lock_extending(c, self.book, job_id, epoch)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def extended(self, job_id: str, since: float) -> None:
        self.book.extended((job_id,), since)

    def holds(self, job_id: str, owner: str | None, epoch: int) -> bool:
        return self.book.holds(job_id, owner, epoch)

    def runs_here(self, job_id: str) -> bool:
        return job_id in self.book

    def take(self, job_id: str, epoch: int, since: float) -> None:
        self.book.take(job_id, epoch, since)

    def drop(self, job_id: str) -> None:
        self.book.drop(job_id)

    def fresh(self, job_id: str, margin: float = START_MARGIN) -> bool:
        return self.book.fresh(job_id, margin)

    def lease_values(self, c: Connection) -> dict[str, Any]:
        # The replica that creates a job runs it: it holds the lease at once.
        return leases.lease_values(self.book, leases.db_now_us(c), 1)

    async def give_back(self, job_id: str, epoch: int) -> None:
        """Stop holding a job at once: dropped from the book, its lease expired (best effort:
        with the database unreachable it expires on its own within a lease)."""
        self.book.drop(job_id)
        with contextlib.suppress(DBAPIError):
            await self._runner.lease_op(self._in_tx, leases.release, self.book, {job_id: epoch})

    async def request_cancel(self, job_id: str) -> Claimed | None:
        return await self._runner.lease_op(self._request_cancel, job_id)

    async def tell_deleted(self, job_ids: Sequence[str]) -> None:
        """Other replicas' watchers hear of a deletion too (best effort: a feed resyncs)."""
        if job_ids:
            with contextlib.suppress(DBAPIError):
                await self.notify(notices.Deleted(self.book.owner, tuple(job_ids)))

    async def claim_jobs(self, limit: int, predecessor: bool = False) -> list[Claimed]:
        """Unowned or expired unfinished jobs (and a dead predecessor's), now held here."""
        since = time.monotonic()
        claimed: list[Claimed] = await self._runner.lease_op(self._in_tx, leases.claim,
                                                             self.book, limit, predecessor)
        for cl in claimed:
            self.book.take(cl.job_id, cl.epoch, since)
        return claimed

    async def renew_leases(self) -> Renewal:
        return await self._runner.lease_op(self._renew)

    async def release_leases(self) -> None:
        held = self.book.held()
        for job_id in held:
            self.book.drop(job_id)
        await self._runner.lease_op(self._in_tx, leases.release, self.book, held)

    async def notify(self, notice: notices.Notice) -> None:
        await self._runner.lease_op(self._in_tx, self._dialect.notify, notices.encode([notice]))

    def _in_tx(self, fn: Any, *args: Any) -> Any:
        with self._dialect.engine.begin() as c:
            return fn(c, *args)

    def _renew(self) -> Renewal:
        with self._dialect.engine.begin() as c:
            renewal = leases.renew(c, self.book)
        if time.monotonic() >= self._next_prune:  # receipts outlive their retries by far
            self._next_prune = time.monotonic() + 60
            with self._dialect.engine.begin() as c:
                c.execute(R.delete().where(R.c.at < now_us() - RECEIPT_TTL_US))
        self._health.contact(True, "")  # the sweep is the replica's health probe
        return renewal

    def _request_cancel(self, job_id: str) -> Claimed | None:
        since = time.monotonic()
        with self._dialect.engine.begin() as c:
            claimed = leases.request_cancel(c, self.book, lock_job(c, job_id))
            if claimed is None:
                self._dialect.notify(c, notices.encode([notices.CancelAsked(self.book.owner,
                                                                            job_id)]))
        if claimed is not None:
            self.book.take(job_id, claimed.epoch, since)
        return claimed
