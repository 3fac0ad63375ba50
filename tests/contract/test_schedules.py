"""Schedules and webhook subscriptions through the contract: create, read, pause/resume,
trigger, delete; bad arguments named all at once; scheduled jobs name their schedule and
nominal time in GetJob and WatchJobs; a per-second schedule fires on its own."""

from __future__ import annotations

import time

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

from .test_inputs import values, violations

DEADLINE = 30


def create(stub: pb_grpc.OrchestratorServiceStub, **kw: object) -> pb.Schedule:
    request = pb.CreateScheduleRequest(**{"definition_name": "greet", **kw})  # type: ignore[arg-type]
    return stub.CreateSchedule(request, timeout=DEADLINE).schedule


def test_a_schedule_is_created_read_paused_resumed_and_deleted(
        stub: pb_grpc.OrchestratorServiceStub) -> None:
    s = create(stub, cron="30 2 * * *", time_zone="Europe/Berlin", inputs=values(who="cron"),
               overlap=pb.OVERLAP_POLICY_CANCEL_PREVIOUS, catchup=pb.CATCHUP_POLICY_LATEST,
               description="nightly greeting")
    assert len(s.schedule_id) == 32 and not s.paused
    assert (s.cron, s.time_zone, s.overlap, s.catchup) == (
        "30 2 * * *", "Europe/Berlin", pb.OVERLAP_POLICY_CANCEL_PREVIOUS, pb.CATCHUP_POLICY_LATEST)
    assert s.inputs["who"].string_value == "cron"
    # The next run is at 02:30 Berlin time, in the future, within a day.
    nxt = s.next_run_time.ToSeconds()
    assert 0 < nxt - time.time() <= 25 * 3600 and nxt % 1800 == 0
    got = stub.GetSchedule(pb.GetScheduleRequest(schedule_id=s.schedule_id), timeout=DEADLINE)
    assert got.schedule == s
    listed = stub.ListSchedules(pb.ListSchedulesRequest(), timeout=DEADLINE).schedules
    assert s.schedule_id in [x.schedule_id for x in listed]
    paused = stub.PauseSchedule(pb.PauseScheduleRequest(schedule_id=s.schedule_id),
                                timeout=DEADLINE).schedule
    assert paused.paused and not paused.HasField("next_run_time")
    resumed = stub.ResumeSchedule(pb.ResumeScheduleRequest(schedule_id=s.schedule_id),
                                  timeout=DEADLINE).schedule
    assert not resumed.paused and resumed.next_run_time == s.next_run_time
    stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=s.schedule_id), timeout=DEADLINE)
    for call in (lambda: stub.GetSchedule(pb.GetScheduleRequest(schedule_id=s.schedule_id),
                                          timeout=DEADLINE),
                 lambda: stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=s.schedule_id),
                                             timeout=DEADLINE)):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_bad_schedules_are_refused_naming_every_problem(
        stub: pb_grpc.OrchestratorServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        create(stub, cron="61 * * *", time_zone="Mars/Olympus",
               inputs=values(times="many", nope=1))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"cron", "time_zone", "inputs.times", "inputs.nope"} <= set(violations(err.value))
    with pytest.raises(grpc.RpcError) as err:
        create(stub, definition_name="no_such_definition", cron="* * * * *")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        create(stub, cron="* * * * *", overlap=99)  # type: ignore[arg-type]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        stub.GetSchedule(pb.GetScheduleRequest(schedule_id="x" * 500), timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_trigger_starts_a_job_naming_its_schedule_and_nominal_time(
        stub: pb_grpc.OrchestratorServiceStub) -> None:
    s = create(stub, cron="0 0 1 1 *", paused=True, inputs=values(who="trigger", times=2))
    before = time.time()
    feed = stub.WatchJobs(pb.WatchJobsRequest(), timeout=DEADLINE)
    next(iter(feed))  # the snapshot: later messages are changes
    job = stub.TriggerSchedule(pb.TriggerScheduleRequest(schedule_id=s.schedule_id),
                               timeout=DEADLINE).job
    assert job.schedule_id == s.schedule_id
    assert before - 1 <= job.nominal_time.ToMicroseconds() / 1e6 <= time.time() + 1
    assert job.inputs["who"].string_value == "trigger" and job.inputs["times"].number_value == 2
    for message in feed:
        if message.job_changed.job_id == job.job_id:
            assert message.job_changed.schedule_id == s.schedule_id
            assert message.job_changed.nominal_time == job.nominal_time
            break
    feed.cancel()
    for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE):
        pass
    done = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job
    assert done.status == pb.JOB_STATUS_COMPLETED
    assert (done.schedule_id, done.nominal_time) == (job.schedule_id, job.nominal_time)
    after = stub.GetSchedule(pb.GetScheduleRequest(schedule_id=s.schedule_id), timeout=DEADLINE)
    assert after.schedule.last_job_id == job.job_id
    assert after.schedule.last_job_status == pb.JOB_STATUS_COMPLETED
    stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=s.schedule_id), timeout=DEADLINE)


def test_a_per_second_schedule_fires_by_itself_once_per_nominal_time(
        stub: pb_grpc.OrchestratorServiceStub) -> None:
    s = create(stub, cron="* * * * * *", overlap=pb.OVERLAP_POLICY_ALLOW)
    seen: dict[str, pb.Job] = {}
    try:
        deadline = time.monotonic() + DEADLINE
        while len(seen) < 3 and time.monotonic() < deadline:
            for j in stub.ListJobs(pb.ListJobsRequest(page_size=100), timeout=DEADLINE).jobs:
                if j.schedule_id == s.schedule_id:
                    seen[j.job_id] = j
            time.sleep(0.2)  # polling ListJobs: the schedule's own pace is the event
    finally:
        stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=s.schedule_id), timeout=DEADLINE)
    nominal = sorted(j.nominal_time.ToMicroseconds() for j in seen.values())
    assert len(nominal) >= 3
    assert len(set(nominal)) == len(nominal) and all(t % 1_000_000 == 0 for t in nominal)


def test_subscriptions_are_checked_and_their_secret_shown_once(
        stub: pb_grpc.OrchestratorServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateSubscription(pb.CreateSubscriptionRequest(
            url="ftp://user:pw@example.com/x", job_statuses=[pb.JOB_STATUS_RUNNING]),
            timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"url", "events", "job_statuses"} <= set(violations(err.value))
    made = stub.CreateSubscription(pb.CreateSubscriptionRequest(
        url="https://hooks.example.com/stepwatch", events=[pb.NOTIFY_EVENT_JOB_FINISHED],
        job_statuses=[pb.JOB_STATUS_FAILED], definition_name="greet"), timeout=DEADLINE)
    assert len(made.secret) == 64 and int(made.secret, 16) >= 0
    listed = stub.ListSubscriptions(pb.ListSubscriptionsRequest(), timeout=DEADLINE)
    mine = [x for x in listed.subscriptions
            if x.subscription_id == made.subscription.subscription_id]
    assert mine == [made.subscription] and made.secret not in str(listed)
    stub.DeleteSubscription(pb.DeleteSubscriptionRequest(
        subscription_id=made.subscription.subscription_id), timeout=DEADLINE)
    with pytest.raises(grpc.RpcError) as err:
        stub.ListDeliveries(pb.ListDeliveriesRequest(limit=5000), timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
