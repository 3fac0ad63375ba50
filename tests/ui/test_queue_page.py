"""The queue page against a scripted WatchJobs feed."""

from __future__ import annotations

from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from nicegui.testing.user import User

from stepwatch.v1 import orchestrator_pb2 as pb
from tests.support import eventually

from .conftest import data_status
from .fake_orchestrator import FakeOrchestrator, Hold

A, B = "a" * 32, "b" * 32


def header(job_id: str, status: int, created: int = 0, **counts: int) -> pb.Job:
    return pb.Job(job_id=job_id, definition_name=f"def-{job_id[0]}", status=status,
                  created_at=Timestamp(seconds=1_764_000_000 + created),
                  step_counts=pb.StepCounts(**counts))


def shown_order(user: User) -> list[str]:
    column = next(iter(user.find(marker="jobs").elements))
    return [c.props.get("data-job-id") for c in column.default_slot.children]


def status_of(user: User, job_id: str) -> str | None:
    return data_status(user, f"job-{job_id}")


async def test_queue_renders_the_feed_and_updates_rows_in_place(user: User, fake: FakeOrchestrator) -> None:
    hold = Hold()
    fake.jobs = [header(A, pb.JOB_STATUS_RUNNING, total=3, completed=1, failed=1, running=1)]
    fake.feed_scripts.append([
        pb.WatchJobsResponse(snapshot=pb.JobsSnapshot()),
        hold,
        pb.WatchJobsResponse(job_changed=header(
            A, pb.JOB_STATUS_COMPLETED_WITH_FAILURES, total=3, completed=2, failed=1)),
        pb.WatchJobsResponse(job_changed=header(B, pb.JOB_STATUS_PENDING, 1, total=1, pending=1)),
    ])
    await user.open("/")
    await user.should_see("def-a")
    await user.should_see("1 completed · 1 failed · 1 running of 3 steps")  # zeros left out
    assert status_of(user, A) == "JOB_STATUS_RUNNING"
    row = next(iter(user.find(marker=f"job-{A}").elements))
    hold.release.set()
    await eventually(lambda: status_of(user, A) == "JOB_STATUS_COMPLETED_WITH_FAILURES")
    await eventually(lambda: status_of(user, B) == "JOB_STATUS_PENDING")
    assert next(iter(user.find(marker=f"job-{A}").elements)) is row  # updated, not rebuilt
    await user.should_see("Completed with failures")
    assert shown_order(user) == [B, A]  # newest first

    # Filter by the server's status value: the server filters, the page shows its answer.
    fake.jobs = [header(B, pb.JOB_STATUS_PENDING, 1, total=1, pending=1), *fake.jobs]
    user.find(marker="filter").elements.pop().set_value(pb.JOB_STATUS_PENDING)
    await eventually(lambda: fake.list_requests[-1].status == pb.JOB_STATUS_PENDING)
    await eventually(lambda: shown_order(user) == [B], what="only the pending job")


async def test_run_and_cancel_send_commands(user: User, fake: FakeOrchestrator) -> None:
    fake.jobs = [header(A, pb.JOB_STATUS_RUNNING, total=1, running=1)]
    fake.feed_scripts.append([pb.WatchJobsResponse(snapshot=pb.JobsSnapshot())])
    await user.open("/")
    await user.should_see("def-a")
    user.find(marker=f"cancel-{A}").click()
    await user.should_see("Cancel job aaaaaaaa?")  # it asks first
    assert fake.cancelled == []
    user.find(marker="confirm-cancel").click()
    await eventually(lambda: fake.cancelled == [A], what="cancelled")
    select = user.find(marker="definition").elements.pop()
    await eventually(lambda: "codebase_assess" in select.options, what="definitions listed")
    select.set_value("codebase_assess")
    user.find(marker="run").click()
    await eventually(lambda: fake.submitted == ["codebase_assess"], what="submitted")
    # Run opens the new job's page, which watches it.
    await eventually(lambda: any(r.job_id == "f" * 32 for r in fake.watch_requests),
                     what="the new job's page")


async def test_a_job_name_opens_its_page(user: User, fake: FakeOrchestrator) -> None:
    fake.jobs = [header(A, pb.JOB_STATUS_COMPLETED, total=1, completed=1)]
    fake.feed_scripts.append([pb.WatchJobsResponse(snapshot=pb.JobsSnapshot())])
    await user.open("/")
    await user.should_see("def-a")
    await user.should_not_see(marker=f"cancel-{A}")  # finished: nothing to cancel
    user.find(marker=f"open-{A}").click()
    await eventually(lambda: len(fake.watch_requests) >= 1, what="the job page watches the job")
    assert fake.watch_requests[0].job_id == A and fake.watch_requests[0].after_seq == 0


async def test_a_snapshot_of_many_jobs_is_shown_newest_first(user: User, fake: FakeOrchestrator) -> None:
    C = "c" * 32
    fake.jobs = [header(C, pb.JOB_STATUS_RUNNING, 2), header(B, pb.JOB_STATUS_COMPLETED, 1),
                 header(A, pb.JOB_STATUS_FAILED, 0)]
    fake.feed_scripts.append([pb.WatchJobsResponse(snapshot=pb.JobsSnapshot())])
    await user.open("/")
    await user.should_see("def-c")
    assert shown_order(user) == [C, B, A]


async def test_pages_search_and_a_new_job_on_the_first_page_only(
        user: User, fake: FakeOrchestrator) -> None:
    ids = [f"{n:032x}" for n in range(120, 0, -1)]  # newest first
    fake.jobs = [header(i, pb.JOB_STATUS_COMPLETED, n, total=1, completed=1)
                 for n, i in zip(range(120, 0, -1), ids, strict=True)]
    hold = Hold()
    fresh = "e" * 32
    fake.feed_scripts.append([pb.WatchJobsResponse(snapshot=pb.JobsSnapshot()), hold,
                              pb.WatchJobsResponse(job_changed=header(fresh, pb.JOB_STATUS_PENDING, 500))])
    await user.open("/")
    await eventually(lambda: shown_order(user) == ids[:50], what="page 1")
    await user.should_see("page 1 · jobs 1–50")
    user.find(marker="older").click()
    await eventually(lambda: shown_order(user) == ids[50:100], what="page 2")
    assert fake.list_requests[-1].page_token == "50"
    hold.release.set()  # a new job: not on page 2 (older jobs only)
    user.find(marker="older").click()
    await eventually(lambda: shown_order(user) == ids[100:], what="page 3, the last")
    assert fresh not in shown_order(user)
    user.find(marker="newer").click()
    user.find(marker="newer").click()
    await eventually(lambda: shown_order(user)[:2] == ids[:2], what="back on page 1")
    # Search by name: the server is asked for the prefix.
    user.find(marker="search").elements.pop().set_value("def-x")
    await eventually(lambda: fake.list_requests[-1].name_prefix == "def-x")
    await eventually(lambda: shown_order(user) == [], what="nothing matches")
    await user.should_see("No jobs match.")


async def test_run_asks_for_the_declared_inputs_and_sends_them(user: User,
                                                              fake: FakeOrchestrator) -> None:
    fake.definitions = [pb.JobDefinitionInfo(name="deploy", inputs=[
        pb.InputDeclaration(name="target", type="enum", choices=["staging", "production"],
                            required=True),
        pb.InputDeclaration(name="replicas", type="int",
                            default_value=struct_pb2.Value(number_value=2)),
        pb.InputDeclaration(name="note", type="string")])]
    fake.feed_scripts.append([pb.WatchJobsResponse(snapshot=pb.JobsSnapshot())])
    await user.open("/")
    select = user.find(marker="definition").elements.pop()
    await eventually(lambda: "deploy" in select.options, what="definitions listed")
    select.set_value("deploy")
    run = user.find(marker="run").elements.pop()
    await eventually(lambda: run.enabled, what="Run enabled once the orchestrator answered")
    user.find(marker="run").click()
    await user.should_see(marker="inputs-dialog")
    assert fake.submitted == []  # not before the form is sent
    user.find(marker="input-target").elements.pop().set_value("production")
    user.find(marker="inputs-run").click()
    await eventually(lambda: fake.submitted == ["deploy"], what="submitted")
    # The filled field, the default as shown, the empty text field left out.
    assert fake.submitted_inputs == [{"target": "production", "replicas": 2}]
