"""The job page against a scripted orchestrator, through NiceGUI's user simulation."""

from __future__ import annotations

import grpc
from nicegui import ui
from nicegui.testing.user import User

from stepwatch.v1 import orchestrator_pb2 as pb
from tests.support import eventually

from .conftest import data_status
from .fake_orchestrator import Abort, FakeOrchestrator, Hold, job, job_event, snapshot, step, step_event

JOB_URL = "/jobs/" + "a" * 32
NO_DOCS = "no documents found matching tags: ['architecture']"


def one(user: User, marker: str) -> ui.element:
    (el,) = user.find(marker=marker).elements
    return el


async def test_completed_with_failures_shows_the_failed_step_as_failed(
        user: User, fake: FakeOrchestrator) -> None:
    failed = step("architecture_notes", 1, pb.STEP_STATUS_FAILED, tolerated=True,
                  failure=pb.Failure(reason=pb.FAILURE_REASON_INIT_FAILED, message=NO_DOCS))
    fake.watch_scripts[0] = [[snapshot(job(
        pb.JOB_STATUS_COMPLETED_WITH_FAILURES, step("summarize", 0, pb.STEP_STATUS_COMPLETED), failed,
        failure=pb.Failure(reason=pb.FAILURE_REASON_INIT_FAILED, message="step 'architecture_notes'")),
        seq=9)]]
    await user.open(JOB_URL)
    await user.should_see(f"Init failed: {NO_DOCS}")
    await user.should_see("tolerated — the job went on")
    # (the failed step's panel can be drawn before the rows' first redraw)
    await eventually(lambda: data_status(user, "step-architecture_notes") == "STEP_STATUS_FAILED",
                     what="the failed step's row")
    assert data_status(user, "step-summarize") == "STEP_STATUS_COMPLETED"
    assert data_status(user, "job-badge") == "JOB_STATUS_COMPLETED_WITH_FAILURES"
    await user.should_see("Completed with failures")
    badges = [el for el in user.find(marker="step-architecture_notes").elements][0]
    assert "Failed" in {lbl.text for lbl in badges.descendants() if isinstance(lbl, ui.label)}
    # The marker belongs to the failed step only.
    summarize_texts = {getattr(el, "text", "") for el in one(user, "step-summarize").descendants()
                       if el.visible}
    assert "tolerated — the job went on" not in summarize_texts


async def test_an_unknown_status_number_shows_unknown(user: User, fake: FakeOrchestrator) -> None:
    fake.watch_scripts[0] = [[snapshot(job(pb.JOB_STATUS_RUNNING, step("future", 0, 99)), seq=3)]]
    await user.open(JOB_URL)
    await user.should_see("Unknown (99)")
    assert data_status(user, "step-future") == "UNKNOWN_99"


async def test_a_broken_stream_reconnects_and_resumes_after_the_last_rendered_seq(
        user: User, fake: FakeOrchestrator) -> None:
    running = step("slow", 0, pb.STEP_STATUS_RUNNING)
    hold = Hold()
    fake.watch_scripts[0] = [
        [snapshot(job(pb.JOB_STATUS_RUNNING, running), seq=5),
         step_event(6, step("slow", 0, pb.STEP_STATUS_RUNNING,
                            children=pb.ChildCounts(total=4, running=1, pending=3))),
         Abort()]]
    fake.watch_scripts[6] = [
        [hold, step_event(7, step("slow", 0, pb.STEP_STATUS_FAILED, failure=pb.Failure(
            reason=pb.FAILURE_REASON_TIMEOUT, message="too slow"))),
         job_event(8, job(pb.JOB_STATUS_FAILED))],
    ]
    await user.open(JOB_URL)
    await eventually(lambda: data_status(user, "step-slow") == "STEP_STATUS_RUNNING")
    row = one(user, "step-slow")
    connection = one(user, "connection")
    await eventually(lambda: connection.props.get("data-connection") == "RECONNECTING",
                     what="Reconnecting shown")
    await user.should_see("Reconnecting")
    # (after_seq 1 is the event panel's history read, not a resume)
    await eventually(lambda: len([r for r in fake.watch_requests if r.after_seq != 1]) == 2,
                     what="a second WatchJob call")
    resumed = [r.after_seq for r in fake.watch_requests if r.after_seq != 1]
    assert resumed == [0, 6]
    assert "sw-stale" in one(user, "job-badge").classes  # greyed while we cannot hear
    assert data_status(user, "step-slow") == "STEP_STATUS_RUNNING"
    hold.release.set()
    await eventually(lambda: data_status(user, "step-slow") == "STEP_STATUS_FAILED", what="resumed")
    await eventually(lambda: data_status(user, "job-badge") == "JOB_STATUS_FAILED", what="job failed")
    assert "sw-stale" not in one(user, "job-badge").classes
    await user.should_see("Timeout: too slow")
    assert one(user, "step-slow") is row  # the row was updated in place, not rebuilt


async def test_unknown_job_says_not_found(user: User, fake: FakeOrchestrator) -> None:
    fake.watch_scripts[0] = [[Abort(grpc.StatusCode.NOT_FOUND, "job 'x' not found")]]
    await user.open(JOB_URL)
    await user.should_see("NOT_FOUND: job 'x' not found")
    assert len(fake.watch_requests) == 1  # not retried: retrying cannot fix it


async def test_the_event_panel_shows_the_events_before_the_snapshot(
        user: User, fake: FakeOrchestrator) -> None:
    done = job(pb.JOB_STATUS_COMPLETED, step("a", 0, pb.STEP_STATUS_COMPLETED))
    fake.watch_scripts[0] = [[snapshot(done, seq=3)]]
    fake.watch_scripts[1] = [[step_event(2, step("a", 0, pb.STEP_STATUS_RUNNING)),
                              step_event(3, step("a", 0, pb.STEP_STATUS_COMPLETED))]]
    await user.open(JOB_URL)
    await user.should_see("step a: Running")
    await user.should_see("step a: Completed")
