"""The client's calls for jobs that run themselves: schedules and webhook subscriptions.

A mixin of ``Client`` (stepwatch.client): the same channel, credentials and errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from google.protobuf import json_format

from stepwatch.v1 import orchestrator_pb2 as pb

__all__ = ["AutomationCalls", "InputValue", "put_inputs"]

InputValue = str | int | float | bool


def put_inputs(target: Any, inputs: Mapping[str, InputValue] | None) -> None:
    """Input values as the contract's JSON values (a string is read by the server as the
    declared type, so values typed on a command line can go as they are)."""
    for name, value in (inputs or {}).items():
        json_format.ParseDict(value, target[name])  # type: ignore[arg-type]  # a Value takes any JSON


class AutomationCalls:
    _stub: Any
    _call: Callable[..., Any]

    async def create_schedule(self, definition_name: str, cron: str, *, time_zone: str = "UTC",
                              inputs: Mapping[str, InputValue] | None = None,
                              overlap: int = pb.OVERLAP_POLICY_SKIP,
                              catchup: int = pb.CATCHUP_POLICY_NONE, paused: bool = False,
                              description: str = "") -> pb.Schedule:
        req = pb.CreateScheduleRequest(definition_name=definition_name, cron=cron,
                                       time_zone=time_zone, overlap=cast(Any, overlap),
                                       catchup=cast(Any, catchup), paused=paused,
                                       description=description)
        put_inputs(req.inputs, inputs)
        resp: pb.CreateScheduleResponse = await self._call(self._stub.CreateSchedule, req)
        return resp.schedule

    async def list_schedules(self) -> list[pb.Schedule]:
        resp = await self._call(self._stub.ListSchedules, pb.ListSchedulesRequest())
        return list(resp.schedules)

    async def get_schedule(self, schedule_id: str) -> pb.Schedule:
        resp = await self._call(self._stub.GetSchedule,
                                pb.GetScheduleRequest(schedule_id=schedule_id))
        return cast(pb.Schedule, resp.schedule)

    async def pause_schedule(self, schedule_id: str, paused: bool = True) -> pb.Schedule:
        if paused:
            resp = await self._call(self._stub.PauseSchedule,
                                    pb.PauseScheduleRequest(schedule_id=schedule_id))
        else:
            resp = await self._call(self._stub.ResumeSchedule,
                                    pb.ResumeScheduleRequest(schedule_id=schedule_id))
        return cast(pb.Schedule, resp.schedule)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._call(self._stub.DeleteSchedule,
                         pb.DeleteScheduleRequest(schedule_id=schedule_id))

    async def trigger_schedule(self, schedule_id: str) -> pb.Job:
        resp = await self._call(self._stub.TriggerSchedule,
                                pb.TriggerScheduleRequest(schedule_id=schedule_id))
        return cast(pb.Job, resp.job)

    async def create_subscription(self, url: str, events: list[int], *,
                                  job_statuses: list[int] | None = None,
                                  definition_name: str = "", description: str = "",
                                  secret: str = "") -> tuple[pb.Subscription, str]:
        """The subscription, and its signing secret (shown this once)."""
        req = pb.CreateSubscriptionRequest(url=url, events=cast(Any, events),
                                           job_statuses=cast(Any, job_statuses or []),
                                           definition_name=definition_name,
                                           description=description, secret=secret)
        resp = await self._call(self._stub.CreateSubscription, req)
        return resp.subscription, resp.secret

    async def list_subscriptions(self) -> list[pb.Subscription]:
        resp = await self._call(self._stub.ListSubscriptions, pb.ListSubscriptionsRequest())
        return list(resp.subscriptions)

    async def delete_subscription(self, subscription_id: str) -> None:
        await self._call(self._stub.DeleteSubscription,
                         pb.DeleteSubscriptionRequest(subscription_id=subscription_id))

    async def list_deliveries(self, subscription_id: str = "", job_id: str = "",
                              limit: int = 0) -> list[pb.Delivery]:
        resp = await self._call(self._stub.ListDeliveries, pb.ListDeliveriesRequest(
            subscription_id=subscription_id, job_id=job_id, limit=limit))
        return list(resp.deliveries)
