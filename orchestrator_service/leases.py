"""Job leases on a shared PostgreSQL database: who runs a job, until when, at which epoch.

A job is run by one replica at a time. Its row carries the lease: the owner (one
process's incarnation, never reused), an expiry on the database's clock, and an
epoch that grows on every change of hands. A replica claims unowned or expired
jobs with ``FOR UPDATE SKIP LOCKED`` (two replicas never claim the same row),
renews its own well before expiry, and the store refuses every write of a job
whose row does not name this incarnation at the epoch it claimed: a replica
that lost a job can no longer write it, whatever its runner still believes.

The functions here run inside a transaction the caller opened; ``LeaseBook`` is
the process's memory of what it holds (shared by the writer threads).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, and_, case, literal_column, or_, select, text, update

from .statuses import JobStatus
from .tables import JobRow

__all__ = ["Claimed", "LeaseBook", "Renewal", "default_replica_name", "lock_extending"]

J = cast(Table, JobRow.__table__)
_UNFINISHED = (int(JobStatus.PENDING), int(JobStatus.RUNNING))
#: Of a lease since the job's latest extension: past this no new command of it starts (the
#: watchdog abandons it at replicas.SELF_FENCE, later).
START_MARGIN = 0.4
_DB_NOW_US = "(extract(epoch from clock_timestamp()) * 1000000)::bigint"
_DB_NOW = text(f"SELECT {_DB_NOW_US}")


def default_replica_name(port: int) -> str:
    """Stable across restarts on one host and port: a restart finds its predecessor's commands."""
    host = socket.gethostname()
    return f"{host}:{port}" if port else f"{host}:pid{os.getpid()}"


@dataclass
class LeaseBook:
    """What this process holds: job id -> the epoch it claimed at, and since when its lease
    surely runs.

    ``since`` is a monotonic time taken before the database read its clock for the job's
    latest extension (a claim, a renewal, a write's commit): the lease runs until at least
    ``since`` plus a lease. Shared by the event loop and the writer threads.
    """

    name: str
    lease_us: int
    #: This process's incarnation: the name plus what makes it unique (never reused).
    owner: str = ""
    #: job id -> (epoch, since)
    _held: dict[str, tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.owner:
            self.owner = f"{self.name}/{os.getpid()}/{secrets.token_hex(4)}"

    def holds(self, job_id: str, owner: str | None, epoch: int) -> bool:
        with self._lock:
            held = self._held.get(job_id)
        return owner == self.owner and held is not None and held[0] == epoch

    def epoch(self, job_id: str) -> int | None:
        with self._lock:
            held = self._held.get(job_id)
        return None if held is None else held[0]

    def take(self, job_id: str, epoch: int, since: float) -> None:
        with self._lock:
            self._held[job_id] = (epoch, since)

    def extended(self, job_ids: Iterable[str], since: float) -> None:
        """These jobs' leases were extended by a statement begun after ``since`` (and
        committed): each runs until at least ``since`` plus a lease."""
        with self._lock:
            for job_id in job_ids:
                if job_id in self._held:
                    epoch, before = self._held[job_id]
                    self._held[job_id] = (epoch, max(before, since))

    def drop(self, job_id: str) -> bool:
        """Forget a job; True if it was held."""
        with self._lock:
            return self._held.pop(job_id, None) is not None

    def age(self, job_id: str, now: float | None = None) -> float:
        """Seconds since the job's latest extension began (infinite if not held)."""
        with self._lock:
            held = self._held.get(job_id)
        if held is None:
            return float("inf")
        return (time.monotonic() if now is None else now) - held[1]

    def fresh(self, job_id: str, margin: float = START_MARGIN) -> bool:
        """Extended within ``margin`` of a lease: safe to start a command (it has most of a
        lease before anyone else may claim the job)."""
        return self.age(job_id) < margin * self.lease_us / 1e6

    def stale(self, limit_s: float, now: float | None = None) -> dict[str, float]:
        """Held jobs not extended for more than ``limit_s``: job id -> seconds since."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return {j: now - t for j, (_, t) in self._held.items() if now - t > limit_s}

    def held(self) -> dict[str, int]:
        """Job id -> the epoch it was claimed at."""
        with self._lock:
            return {job_id: epoch for job_id, (epoch, _) in self._held.items()}

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._held


@dataclass(frozen=True)
class Claimed:
    job_id: str
    epoch: int
    #: The lease had an owner before (a takeover), or the job had never been claimed.
    takeover: bool
    cancel_requested: bool


@dataclass(frozen=True)
class Renewal:
    #: Held jobs whose lease was extended; those of them a CancelJob elsewhere asked to stop.
    renewed: frozenset[str] = frozenset()
    cancel_requested: frozenset[str] = frozenset()
    #: Held jobs whose row names another owner or epoch now: taken over.
    lost: frozenset[str] = frozenset()
    #: Held jobs that reached a terminal status: nothing to hold any more.
    ended: frozenset[str] = frozenset()


def db_now_us(c: Connection) -> int:
    """The database's clock: every replica compares expiries against the same one."""
    return int(c.execute(_DB_NOW).scalar_one())


def lease_values(book: LeaseBook, now: int, epoch: int) -> dict[str, Any]:
    return {"lease_owner": book.owner, "lease_epoch": epoch,
            "lease_expires_at": now + book.lease_us}


def claim(c: Connection, book: LeaseBook, limit: int, predecessor: bool = False) -> list[Claimed]:
    """Unowned or expired unfinished jobs, at most ``limit``, now this process's (epoch + 1).

    ``predecessor``: also the live-looking leases of an earlier incarnation of this replica's
    name (the caller knows it is dead: it bound the address that name stands for).
    """
    now = db_now_us(c)
    claimable = or_(J.c.lease_owner.is_(None), J.c.lease_expires_at < now)
    if predecessor:
        claimable = or_(claimable, and_(J.c.lease_owner.startswith(f"{book.name}/", autoescape=True),
                                        J.c.lease_owner != book.owner))
    rows = c.execute(
        select(J.c.job_id, J.c.lease_owner, J.c.lease_epoch, J.c.cancel_requested)
        .where(J.c.status.in_(_UNFINISHED), claimable)
        .order_by(J.c.id).limit(limit).with_for_update(skip_locked=True)).all()
    out = []
    for r in rows:
        epoch = int(r.lease_epoch) + 1
        c.execute(update(J).where(J.c.job_id == r.job_id).values(**lease_values(book, now, epoch)))
        out.append(Claimed(r.job_id, epoch, r.lease_owner is not None, bool(r.cancel_requested)))
    return out


def renew(c: Connection, book: LeaseBook) -> Renewal:
    """Extend every lease this process still holds and nobody is writing; say which it lost
    and which ended.

    A row locked now is skipped, not waited for: the lock is a write of it (ours, whose
    commit extends the lease: ``lock_extending``; or a cancel, brief), and a locked row
    cannot be claimed. A renewal that queued behind a long write would leave every other
    lease unrenewed meanwhile.
    """
    held = book.held()
    if not held:
        return Renewal()
    now = db_now_us(c)
    renewed: set[str] = set()
    cancel: set[str] = set()
    ids = list(held)
    for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
        free = (select(J.c.id).where(J.c.job_id.in_(chunk), J.c.lease_owner == book.owner,
                                     J.c.status.in_(_UNFINISHED))
                .with_for_update(skip_locked=True).scalar_subquery())
        rows = c.execute(
            update(J).where(J.c.id.in_(free))
            .values(lease_expires_at=now + book.lease_us)
            .returning(J.c.job_id, J.c.lease_epoch, J.c.cancel_requested)).all()
        for r in rows:
            if held.get(r.job_id) == r.lease_epoch:
                renewed.add(r.job_id)
                if r.cancel_requested:
                    cancel.add(r.job_id)
    lost: set[str] = set()
    ended: set[str] = set()
    missing = [j for j in ids if j not in renewed]
    for chunk in (missing[i:i + 500] for i in range(0, len(missing), 500)):
        # A statement of its own sees what committed since the update began: a job created
        # meanwhile is ours, not lost; a job not committed yet is not looked at. A row
        # skipped as locked that is still ours is neither: its lease runs on.
        for r in c.execute(select(J.c.job_id, J.c.lease_owner, J.c.lease_epoch, J.c.status)
                           .where(J.c.job_id.in_(chunk))):
            if JobStatus(r.status).terminal:
                ended.add(r.job_id)
            elif r.lease_owner != book.owner or r.lease_epoch != held[r.job_id]:
                lost.add(r.job_id)
    return Renewal(frozenset(renewed), frozenset(cancel), frozenset(lost), frozenset(ended))


def lock_extending(c: Connection, book: LeaseBook, job_id: str, epoch: int) -> Row[Any] | None:
    """The job's row, locked for a write of it, its lease extended if this process still
    holds it at ``epoch`` (the row as it is otherwise: the caller's fence refuses). None: no
    such job. The extension counts from when the caller began (``LeaseBook.extended`` after
    the commit)."""
    mine = and_(J.c.lease_owner == book.owner, J.c.lease_epoch == epoch)
    return c.execute(
        update(J).where(J.c.job_id == job_id)
        .values(lease_expires_at=case((mine, literal_column(_DB_NOW_US) + book.lease_us),
                                      else_=J.c.lease_expires_at))
        .returning(*J.c)).first()


def release(c: Connection, book: LeaseBook, job_ids: Mapping[str, int]) -> None:
    """Give leases up at once (a clean stop): another replica takes the jobs over now."""
    for job_id, epoch in job_ids.items():
        c.execute(update(J).where(and_(J.c.job_id == job_id, J.c.lease_owner == book.owner,
                                       J.c.lease_epoch == epoch))
                  .values(lease_expires_at=0))


def request_cancel(c: Connection, book: LeaseBook, job: Row[Any]) -> Claimed | None:
    """CancelJob for a job this process does not hold; ``job`` is its row, locked by the caller.

    An expired or unowned lease is taken here (the caller then cancels as the
    owner, returned); a live one elsewhere gets the request recorded for its
    owner (None), who is told through the notification that follows the commit.
    """
    now = db_now_us(c)
    if job.lease_owner is None or (job.lease_expires_at or 0) < now or job.lease_owner == book.owner:
        epoch = int(job.lease_epoch) + (0 if job.lease_owner == book.owner else 1)
        c.execute(update(J).where(J.c.job_id == job.job_id)
                  .values(**lease_values(book, now, epoch)))
        return Claimed(job.job_id, epoch, job.lease_owner is not None, True)
    c.execute(update(J).where(J.c.job_id == job.job_id).values(cancel_requested=True))
    return None
