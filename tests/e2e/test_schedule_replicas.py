"""A per-second schedule on real time, fired by two PostgreSQL replicas, one SIGKILLed
mid-way: each nominal time starts exactly one job (none missed, none twice)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.postgres import PostgresCluster
from tests.procs import Orchestrator

# Run alone (make test's second pass): a per-second schedule across replicas and a kill, timed.
pytestmark = pytest.mark.serial

DEADLINE = 60
SECOND = 1_000_000


def scheduled_jobs(stub: pb_grpc.OrchestratorServiceStub, schedule_id: str) -> list[pb.Job]:
    jobs, token = [], ""
    while True:
        page = stub.ListJobs(pb.ListJobsRequest(page_size=1000, page_token=token),
                             timeout=DEADLINE)
        jobs += [j for j in page.jobs if j.schedule_id == schedule_id]
        if not (token := page.next_page_token):
            return jobs


def test_each_nominal_second_starts_exactly_one_job_across_replicas(
        postgres: PostgresCluster, tmp_path: Path) -> None:
    url = postgres.new_database()
    flags = ["--scheduler-tick", "0.2"]
    a = Orchestrator(url, workspace=tmp_path, extra=flags)
    b = Orchestrator(url, workspace=tmp_path, extra=flags)
    try:
        with grpc.insecure_channel(b.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            s = stub.CreateSchedule(pb.CreateScheduleRequest(
                definition_name="greet", cron="* * * * * *", overlap=pb.OVERLAP_POLICY_ALLOW,
                catchup=pb.CATCHUP_POLICY_ALL), timeout=DEADLINE).schedule
            first = s.next_run_time.ToMicroseconds()
            deadline = time.monotonic() + DEADLINE
            while len(scheduled_jobs(stub, s.schedule_id)) < 4:
                assert time.monotonic() < deadline
                time.sleep(0.2)  # polling ListJobs: the schedule's own pace is the event
            a.stop(signal.SIGKILL)  # mid-way, perhaps inside a firing transaction
            killed_at = time.time()
            while time.time() < killed_at + 4:
                time.sleep(0.2)  # real time passing is what this test is about
            stub.PauseSchedule(pb.PauseScheduleRequest(schedule_id=s.schedule_id),
                               timeout=DEADLINE)
            jobs = scheduled_jobs(stub, s.schedule_id)
            last = stub.GetSchedule(pb.GetScheduleRequest(schedule_id=s.schedule_id),
                                    timeout=DEADLINE).schedule.last_nominal_time.ToMicroseconds()
        nominal = Counter(j.nominal_time.ToMicroseconds() for j in jobs)
        assert max(nominal.values()) == 1, nominal.most_common(3)
        assert sorted(nominal) == list(range(first, last + 1, SECOND))
        assert last >= int(killed_at) * SECOND + 2 * SECOND  # b went on after the kill
    finally:
        a.stop()
        b.stop()
