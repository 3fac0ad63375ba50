"""Webhooks in the store: subscriptions, and the outbox of deliveries.

A delivery is inserted by ``enqueue`` in the transaction that commits the status causing
it (a job's terminal header, a step's FAILED), so a status is never committed without its
notifications, nor a notification without its status. The notifier (notifier.py) claims
due deliveries one attempt at a time: a claim counts the attempt and names the replica,
under the row's lock, so two replicas never send one attempt.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, insert, or_, select, update

from ..model import Event
from ..statuses import JobStatus, StepStatus
from ..tables import DeliveryRow, SubscriptionRow
from ..webhooks import DeliveryState, NotifyEvent, SubscriptionSpec, matches
from .values import new_id

__all__ = ["Claim", "DeliveryRecord", "SubscriptionRecord", "enqueue"]

SUB = cast(Table, SubscriptionRow.__table__)
DEL = cast(Table, DeliveryRow.__table__)


@dataclass(frozen=True)
class SubscriptionRecord:
    subscription_id: str
    spec: SubscriptionSpec
    created_at: int
    secret: str = ""


@dataclass(frozen=True)
class DeliveryRecord:
    delivery_id: str
    subscription_id: str
    event: NotifyEvent
    job_id: str
    step_id: str
    step_name: str
    state: DeliveryState
    attempts: int
    last_status_code: int
    last_error: str
    created_at: int
    last_attempt_at: int | None
    next_at: int | None


@dataclass(frozen=True)
class Claim:
    """One attempt of one delivery, claimed by this replica until ``expires_at``."""

    delivery: DeliveryRecord
    url: str
    secret: str
    expires_at: int


def _numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def subscription_of(r: Any) -> SubscriptionRecord:
    return SubscriptionRecord(
        r.subscription_id,
        SubscriptionSpec(r.url, frozenset(NotifyEvent(n) for n in _numbers(r.events)),
                         frozenset(JobStatus(n) for n in _numbers(r.job_statuses)),
                         r.definition_name, r.description),
        r.created_at, r.secret)


def delivery_of(r: Any) -> DeliveryRecord:
    return DeliveryRecord(r.delivery_id, r.subscription_id, NotifyEvent(r.event), r.job_id,
                          r.step_id or "", r.step_name, DeliveryState(r.state), r.attempts,
                          r.last_status_code, r.last_error, r.created_at, r.last_attempt_at,
                          r.next_at)


def _causes(events: Sequence[Event]) -> list[tuple[NotifyEvent, str, str, JobStatus | None]]:
    """(event, step_id, step name, job status) of what in ``events`` is notified."""
    found: list[tuple[NotifyEvent, str, str, JobStatus | None]] = []
    for e in events:
        if e.step is not None and e.step.status == StepStatus.FAILED:
            found.append((NotifyEvent.STEP_FAILED, e.step.step_id, e.step.name, None))
        elif e.ends_job:
            assert e.job is not None
            found.append((NotifyEvent.JOB_FINISHED, "", "", e.job.status))
    return found


def enqueue(c: Connection, job_id: str, definition_name: str, status: JobStatus,
            events: Sequence[Event], now: int) -> int:
    """In the status's transaction (under the job's lock): a delivery per matching
    subscription for each notified event; none twice for one (subscription, job, event,
    step). How many were inserted."""
    causes = _causes(events)
    if not causes:
        return 0
    subs = [subscription_of(r) for r in c.execute(select(SUB))]
    if not subs:
        return 0
    rows = []
    for event, step_id, step_name, job_status in causes:
        for sub in subs:
            if not matches(sub.spec, event, definition_name, job_status or status):
                continue
            seen = c.execute(select(DEL.c.id).where(
                DEL.c.subscription_id == sub.subscription_id, DEL.c.job_id == job_id,
                DEL.c.event == int(event), DEL.c.step_id == step_id).limit(1)).first()
            if seen is None:
                rows.append({"delivery_id": new_id(), "subscription_id": sub.subscription_id,
                             "event": int(event), "job_id": job_id, "step_id": step_id,
                             "step_name": step_name, "state": int(DeliveryState.PENDING),
                             "attempts": 0, "last_status_code": 0, "last_error": "",
                             "created_at": now, "next_at": now})
    if rows:
        c.execute(insert(DEL), rows)
    return len(rows)


# -- subscriptions -----------------------------------------------------------------------------


def create_subscription(c: Connection, spec: SubscriptionSpec, secret: str,
                        now: int) -> SubscriptionRecord:
    sub_id = new_id()
    secret = secret or secrets.token_hex(32)
    c.execute(insert(SUB).values(
        subscription_id=sub_id, url=spec.url, secret=secret,
        events=",".join(str(int(e)) for e in sorted(spec.events)),
        job_statuses=",".join(str(int(s)) for s in sorted(spec.job_statuses)),
        definition_name=spec.definition_name, description=spec.description, created_at=now))
    return SubscriptionRecord(sub_id, spec, now, secret)


def list_subscriptions(c: Connection) -> list[SubscriptionRecord]:
    return [subscription_of(r) for r in
            c.execute(select(SUB).order_by(SUB.c.created_at, SUB.c.subscription_id))]


def delete_subscription(c: Connection, sub_id: str) -> bool:
    """Gone, with its pending deliveries (its log of sent ones stays readable)."""
    c.execute(delete(DEL).where(DEL.c.subscription_id == sub_id,
                                DEL.c.state == int(DeliveryState.PENDING)))
    return c.execute(delete(SUB).where(SUB.c.subscription_id == sub_id)).rowcount > 0


# -- deliveries ----------------------------------------------------------------------------------


def _due(now: int) -> Any:
    """Pending, its next try due, and not claimed (or its claim expired)."""
    return (DEL.c.state == int(DeliveryState.PENDING)) & (DEL.c.next_at <= now) & or_(
        DEL.c.claim_expires_at.is_(None), DEL.c.claim_expires_at <= now)


def any_due(c: Connection, now: int) -> bool:
    """Whether a delivery is due (a read: an idle notifier takes no write lock)."""
    return c.execute(select(DEL.c.id).where(_due(now)).limit(1)).first() is not None


def claim_due(c: Connection, owner: str, now: int, claim_us: int, limit: int) -> list[Claim]:
    """Up to ``limit`` due deliveries, each with its next attempt counted and claimed by
    ``owner`` until now + claim_us. Rows another replica is claiming are passed over."""
    q = select(DEL.c.id).where(_due(now)).order_by(DEL.c.next_at, DEL.c.id).limit(limit)
    # SKIP LOCKED on PostgreSQL (SQLite has one writer and renders no FOR UPDATE).
    ids = list(c.execute(q.with_for_update(skip_locked=True)).scalars())
    if not ids:
        return []
    c.execute(update(DEL).where(DEL.c.id.in_(ids)).values(
        attempts=DEL.c.attempts + 1, claimed_by=owner, claim_expires_at=now + claim_us,
        last_attempt_at=now))
    rows = c.execute(select(DEL, SUB.c.url, SUB.c.secret)
                     .join(SUB, SUB.c.subscription_id == DEL.c.subscription_id)
                     .where(DEL.c.id.in_(ids)).order_by(DEL.c.next_at, DEL.c.id)).all()
    return [Claim(delivery_of(r), r.url, r.secret, now + claim_us) for r in rows]


def record_attempt(c: Connection, claim: Claim, owner: str, state: DeliveryState,
                   status_code: int, error: str, next_at: int | None) -> bool:
    """The outcome of a claimed attempt; False when the claim was no longer ours."""
    d = claim.delivery
    return c.execute(update(DEL).where(
        DEL.c.delivery_id == d.delivery_id, DEL.c.claimed_by == owner,
        DEL.c.attempts == d.attempts).values(
        state=int(state), last_status_code=status_code, last_error=error[:2000],
        next_at=next_at, claimed_by=None, claim_expires_at=None)).rowcount > 0


def list_deliveries(c: Connection, subscription_id: str, job_id: str,
                    limit: int) -> list[DeliveryRecord]:
    q = select(DEL)
    if subscription_id:
        q = q.where(DEL.c.subscription_id == subscription_id)
    if job_id:
        q = q.where(DEL.c.job_id == job_id)
    return [delivery_of(r) for r in c.execute(q.order_by(DEL.c.id.desc()).limit(limit))]


def any_claimed(c: Connection) -> bool:
    return c.execute(select(DEL.c.id).where(DEL.c.claimed_by.is_not(None)).limit(1)
                     ).first() is not None


def release_claims(c: Connection) -> int:
    """Every claim, released (one process per database, at its start)."""
    return c.execute(update(DEL).where(DEL.c.claimed_by.is_not(None)).values(
        claimed_by=None, claim_expires_at=None)).rowcount
