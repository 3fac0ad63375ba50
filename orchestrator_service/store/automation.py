"""The store's side of jobs that run themselves: schedules, subscriptions, deliveries.

Thin: each method is one transaction of scheduled.py or outbox.py, run by the runner
(reads on a reader, writes on a writer, retried like every command's write). Firing a
schedule creates jobs, so it is a job write (``Writes.fire_schedule``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..schedules import ScheduleSpec
from ..webhooks import DeliveryState, SubscriptionSpec
from . import outbox, scheduled
from .dialect import Dialect
from .outbox import Claim, DeliveryRecord, SubscriptionRecord
from .runner import Runner
from .scheduled import ScheduleRecord

__all__ = ["Automation"]

T = TypeVar("T")


class Automation:
    def __init__(self, runner: Runner, dialect: Dialect) -> None:
        self._runner = runner
        self._dialect = dialect

    # -- schedules -------------------------------------------------------------------------

    async def create_schedule(self, spec: ScheduleSpec, now: int) -> ScheduleRecord:
        return await self._runner.write("create_schedule", self._tx, scheduled.create_schedule,
                                        spec, now, wait=False)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        """LookupError when there is none."""
        return await self._runner.read(scheduled.get_schedule, schedule_id)

    async def list_schedules(self) -> list[ScheduleRecord]:
        return await self._runner.read(scheduled.list_schedules)

    async def set_paused(self, schedule_id: str, paused: bool, now: int) -> ScheduleRecord:
        return await self._runner.write("pause_schedule", self._tx, scheduled.set_paused,
                                        schedule_id, paused, now, wait=False)

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await self._runner.write("delete_schedule", self._tx, scheduled.delete_schedule,
                                        schedule_id, wait=False)

    async def due_schedules(self, now: int) -> list[ScheduleRecord]:
        return await self._runner.read(scheduled.due_schedules, now)

    # -- subscriptions and deliveries ------------------------------------------------------

    async def create_subscription(self, spec: SubscriptionSpec, secret: str,
                                  now: int) -> SubscriptionRecord:
        return await self._runner.write("create_subscription", self._tx,
                                        outbox.create_subscription, spec, secret, now, wait=False)

    async def list_subscriptions(self) -> list[SubscriptionRecord]:
        return await self._runner.read(outbox.list_subscriptions)

    async def delete_subscription(self, subscription_id: str) -> bool:
        return await self._runner.write("delete_subscription", self._tx,
                                        outbox.delete_subscription, subscription_id, wait=False)

    async def claim_deliveries(self, owner: str, now: int, claim_us: int,
                               limit: int) -> list[Claim]:
        if not await self._runner.read(outbox.any_due, now):
            return []
        return await self._runner.write("claim_deliveries", self._tx, outbox.claim_due, owner,
                                        now, claim_us, limit, wait=False)

    async def record_delivery(self, claim: Claim, owner: str, state: DeliveryState,
                              status_code: int, error: str, next_at: int | None) -> bool:
        # Waits out a storage fault: the outcome of a sent attempt is worth keeping.
        return await self._runner.write("record_delivery", self._tx, outbox.record_attempt,
                                        claim, owner, state, status_code, error, next_at)

    async def release_claims(self) -> int:
        if not await self._runner.read(outbox.any_claimed):
            return 0  # the usual start: a read, no write lock
        return await self._runner.write("release_claims", self._tx, outbox.release_claims)

    async def list_deliveries(self, subscription_id: str, job_id: str,
                              limit: int) -> list[DeliveryRecord]:
        return await self._runner.read(outbox.list_deliveries, subscription_id, job_id, limit)

    def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in one write transaction."""
        with self._dialect.engine.begin() as c:
            return fn(c, *args)
