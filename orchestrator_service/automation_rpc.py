"""The servicer's schedules and webhooks RPCs: thin translations, like service.py's.

A mixin of ``OrchestratorServicer`` (one contract service, one stub for clients); roles
are auth.py's table (admin to change, viewer to read).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb

from . import codec
from .catalog import Catalog
from .definitions import DefinitionError, check_inputs
from .errors import RpcError, invalid
from .rpc import bounded_id, rpc
from .scheduler import Scheduler
from .schedules import Catchup, Overlap, ScheduleError, ScheduleSpec, check_spec
from .statuses import JobStatus
from .store import Store, now_us
from .webhooks import InvalidSubscription, NotifyEvent, SubscriptionSpec, WebhookPolicy, check_subscription

__all__ = ["AutomationRpcs"]

Context = grpc.aio.ServicerContext[Any, Any]
OVERLAP_OF = {v: k for k, v in codec.OVERLAP.items()}
CATCHUP_OF = {v: k for k, v in codec.CATCHUP.items()}
DEFAULT_DELIVERIES = 50
MAX_DELIVERIES = 1000
MAX_SECRET = 200


def _not_found(what: str, ident: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, f"no {what} {ident!r}")


class AutomationRpcs:
    store: Store
    catalog: Catalog
    scheduler: Scheduler | None
    webhook_policy: WebhookPolicy

    # -- schedules ---------------------------------------------------------------------------

    @rpc
    async def CreateSchedule(  # noqa: N802
            self, request: pb.CreateScheduleRequest, context: Context) -> pb.CreateScheduleResponse:
        overlap = OVERLAP_OF.get(request.overlap or pb.OVERLAP_POLICY_SKIP)
        catchup = CATCHUP_OF.get(request.catchup or pb.CATCHUP_POLICY_NONE)
        if overlap is None:
            raise invalid("overlap", f"unknown OverlapPolicy value {request.overlap}")
        if catchup is None:
            raise invalid("catchup", f"unknown CatchupPolicy value {request.catchup}")
        bounded_id("definition_name", request.definition_name, required=True,
                   what="a catalog definition's name")
        if len(request.description) > 2000:
            raise invalid("description", "is over 2000 characters")
        spec = ScheduleSpec(request.definition_name, request.cron, request.time_zone or "UTC",
                            Overlap(overlap), Catchup(catchup), codec.input_values(request.inputs),
                            request.paused, request.description)
        await asyncio.to_thread(self._check_schedule, spec)
        record = await self.store.automation.create_schedule(spec, now_us())
        return pb.CreateScheduleResponse(schedule=codec.schedule(record))

    def _check_schedule(self, spec: ScheduleSpec) -> None:
        """Every problem at once: the cron fields, the zone, and the inputs the catalog's
        definition refuses (it must exist and be valid now)."""
        violations = []
        try:
            check_spec(spec)
        except ScheduleError as exc:
            violations += exc.violations
        try:
            check_inputs(self.catalog.get(spec.definition_name).definition, spec.inputs)
        except DefinitionError as exc:
            violations += exc.violations
        if violations:
            raise ScheduleError(violations)

    @rpc
    async def ListSchedules(  # noqa: N802
            self, request: pb.ListSchedulesRequest, context: Context) -> pb.ListSchedulesResponse:
        records = await self.store.automation.list_schedules()
        return pb.ListSchedulesResponse(schedules=[codec.schedule(r) for r in records])

    @rpc
    async def GetSchedule(  # noqa: N802
            self, request: pb.GetScheduleRequest, context: Context) -> pb.GetScheduleResponse:
        sid = bounded_id("schedule_id", request.schedule_id, required=True)
        try:
            record = await self.store.automation.get_schedule(sid)
        except LookupError:
            raise _not_found("schedule", sid) from None
        return pb.GetScheduleResponse(schedule=codec.schedule(record))

    async def _set_paused(self, schedule_id: str, paused: bool) -> pb.Schedule:
        sid = bounded_id("schedule_id", schedule_id, required=True)
        try:
            return codec.schedule(await self.store.automation.set_paused(sid, paused, now_us()))
        except LookupError:
            raise _not_found("schedule", sid) from None

    @rpc
    async def PauseSchedule(  # noqa: N802
            self, request: pb.PauseScheduleRequest, context: Context) -> pb.PauseScheduleResponse:
        return pb.PauseScheduleResponse(schedule=await self._set_paused(request.schedule_id, True))

    @rpc
    async def ResumeSchedule(  # noqa: N802
            self, request: pb.ResumeScheduleRequest, context: Context) -> pb.ResumeScheduleResponse:
        return pb.ResumeScheduleResponse(
            schedule=await self._set_paused(request.schedule_id, False))

    @rpc
    async def DeleteSchedule(  # noqa: N802
            self, request: pb.DeleteScheduleRequest, context: Context) -> pb.DeleteScheduleResponse:
        sid = bounded_id("schedule_id", request.schedule_id, required=True)
        if not await self.store.automation.delete_schedule(sid):
            raise _not_found("schedule", sid)
        return pb.DeleteScheduleResponse(schedule_id=sid)

    @rpc
    async def TriggerSchedule(  # noqa: N802
            self, request: pb.TriggerScheduleRequest, context: Context) -> pb.TriggerScheduleResponse:
        sid = bounded_id("schedule_id", request.schedule_id, required=True)
        assert self.scheduler is not None
        try:
            fired = await self.scheduler.trigger(sid)
        except LookupError:
            raise _not_found("schedule", sid) from None
        return pb.TriggerScheduleResponse(job=codec.job(fired.jobs[0]))

    # -- webhooks ----------------------------------------------------------------------------

    @rpc
    async def CreateSubscription(  # noqa: N802
            self, request: pb.CreateSubscriptionRequest,
            context: Context) -> pb.CreateSubscriptionResponse:
        try:
            events = frozenset(NotifyEvent(e) for e in request.events)
        except ValueError:
            raise invalid("events", "holds an unknown NotifyEvent value") from None
        try:
            statuses = frozenset(JobStatus(s) for s in request.job_statuses)
        except ValueError:
            raise invalid("job_statuses", "holds an unknown JobStatus value") from None
        if len(request.secret) > MAX_SECRET:
            raise invalid("secret", f"is over {MAX_SECRET} characters")
        spec = SubscriptionSpec(request.url, events, statuses, request.definition_name,
                                request.description)
        bad = check_subscription(spec, self.webhook_policy)
        if bad:
            raise InvalidSubscription(bad)
        record = await self.store.automation.create_subscription(spec, request.secret, now_us())
        return pb.CreateSubscriptionResponse(subscription=codec.subscription(record),
                                             secret=record.secret)

    @rpc
    async def ListSubscriptions(  # noqa: N802
            self, request: pb.ListSubscriptionsRequest,
            context: Context) -> pb.ListSubscriptionsResponse:
        records = await self.store.automation.list_subscriptions()
        return pb.ListSubscriptionsResponse(subscriptions=[codec.subscription(r) for r in records])

    @rpc
    async def DeleteSubscription(  # noqa: N802
            self, request: pb.DeleteSubscriptionRequest,
            context: Context) -> pb.DeleteSubscriptionResponse:
        sid = bounded_id("subscription_id", request.subscription_id, required=True)
        if not await self.store.automation.delete_subscription(sid):
            raise _not_found("subscription", sid)
        return pb.DeleteSubscriptionResponse(subscription_id=sid)

    @rpc
    async def ListDeliveries(  # noqa: N802
            self, request: pb.ListDeliveriesRequest, context: Context) -> pb.ListDeliveriesResponse:
        bounded_id("subscription_id", request.subscription_id)
        bounded_id("job_id", request.job_id)
        if request.limit > MAX_DELIVERIES:
            raise invalid("limit", f"must be at most {MAX_DELIVERIES}")
        records = await self.store.automation.list_deliveries(
            request.subscription_id, request.job_id, request.limit or DEFAULT_DELIVERIES)
        return pb.ListDeliveriesResponse(deliveries=[codec.delivery(d) for d in records])
