from google.protobuf.timestamp_pb2 import Timestamp

from stepwatch import status
from stepwatch.jobview import apply_event, is_terminal
from stepwatch.v1 import orchestrator_pb2 as pb


def job_with_steps() -> pb.Job:
    return pb.Job(job_id="j", status=pb.JOB_STATUS_RUNNING, head_seq=3, steps=[
        pb.Step(step_id="a", index=0, name="a", status=pb.STEP_STATUS_COMPLETED),
        pb.Step(step_id="b", index=1, name="b", status=pb.STEP_STATUS_RUNNING)])


def test_a_step_event_replaces_that_step_whole() -> None:
    ev = pb.JobEvent(seq=4, step_changed=pb.Step(
        step_id="b", index=1, name="b", status=pb.STEP_STATUS_FAILED,
        failure=pb.Failure(reason=pb.FAILURE_REASON_INIT_FAILED, message="no documents")))
    before = job_with_steps()
    after = apply_event(before, ev)
    assert after.steps[1] == ev.step_changed
    assert after.steps[0] == before.steps[0]
    assert after.head_seq == 4
    assert before.steps[1].status == pb.STEP_STATUS_RUNNING  # the input is not modified


def test_the_job_status_comes_only_from_job_events() -> None:
    # Every step completed, but no job event yet: the job stays what the server said.
    done = pb.JobEvent(seq=4, step_changed=pb.Step(step_id="b", index=1, name="b",
                                                   status=pb.STEP_STATUS_COMPLETED))
    job = apply_event(job_with_steps(), done)
    assert job.status == pb.JOB_STATUS_RUNNING and not is_terminal(job)
    header = pb.Job(job_id="j", status=pb.JOB_STATUS_COMPLETED_WITH_FAILURES, head_seq=5,
                    finished_at=Timestamp(seconds=5))
    job = apply_event(job, pb.JobEvent(seq=5, job_changed=header))
    assert job.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES and is_terminal(job)
    assert [s.status for s in job.steps] == [pb.STEP_STATUS_COMPLETED, pb.STEP_STATUS_COMPLETED]


def test_a_new_step_is_inserted_in_index_order() -> None:
    job = pb.Job(steps=[pb.Step(step_id="c", index=2)])
    job = apply_event(job, pb.JobEvent(seq=1, step_changed=pb.Step(step_id="a", index=0)))
    assert [s.step_id for s in job.steps] == ["a", "c"]


def test_labels_keep_unknown_values_unknown() -> None:
    assert status.label(status.STEP, pb.STEP_STATUS_FAILED) == "Failed"
    assert status.label(status.JOB, pb.JOB_STATUS_COMPLETED_WITH_FAILURES) == "Completed with failures"
    assert status.label(status.STEP, 99) == "Unknown (99)"
    assert status.label(status.STEP, 0) == "Unknown (0)"
    assert status.label(status.REASON, pb.FAILURE_REASON_INIT_FAILED) == "Init failed"


def test_to_json_equals_asdict_for_every_field() -> None:
    import importlib.util
    import json
    from dataclasses import asdict
    from pathlib import Path

    from orchestrator_service import migrations
    from orchestrator_service.model import ChildCounts, Failure, JobState, StepCounts, StepState

    # The JSON codec of versions before 0006 lives in that migration, the one place using it.
    path = Path(migrations.__file__).parent / "versions" / "0006_events_as_proto_bytes.py"
    spec = importlib.util.spec_from_file_location("migration_0006", path)
    assert spec is not None and spec.loader is not None
    codec = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codec)
    to_json, step_from_json, job_from_json = codec.to_json, codec.step_from_json, codec.job_from_json
    from orchestrator_service.statuses import FailureReason, JobStatus, StepStatus

    step = StepState("s", "j", 2, "n", "shell", ("a", "b"), StepStatus.FAILED, 3, 1, 2.5, 10,
                     Failure(FailureReason.TIMEOUT, "slow"), True, ChildCounts(5, 0, 0, 3, 1, 1),
                     4, 2, 11, 12, Failure(FailureReason.INIT_FAILED, "x"))
    job = JobState("j", "d", "desc", "continue", JobStatus.COMPLETED_WITH_FAILURES, 1, 9,
                   Failure(FailureReason.TIMEOUT, "slow"), StepCounts(1, 0, 0, 0, 1, 0, 0), 2, 3,
                   (step,))
    for value in (step, job):  # the same JSON text as the generic (slow) encoding
        assert json.dumps(to_json(value)) == json.dumps(asdict(value))
    assert step_from_json(to_json(step)) == step
    assert job_from_json(to_json(job)) == job


def test_full_dates_and_relative_times() -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    from ui_service.pages.widgets import ago, date_time

    ts = Timestamp(seconds=1_000_000)
    assert date_time(Timestamp()) == "–" and ago(Timestamp()) == ""
    assert len(date_time(ts)) == len("2026-11-26 00:41:02")
    assert [ago(ts, 1_000_000 + s) for s in (-3, 5, 42, 125, 7300, 90000, 200000)] == [
        "just now", "just now", "42s ago", "2 min ago", "2 h ago", "1 day ago", "2 days ago"]


def test_human_durations_and_counts() -> None:
    from stepwatch.words import child_counts, human_duration, plural, step_counts

    assert [human_duration(s) for s in (-1, 0.04, 9.94, 12.4, 59.6, 123, 3725, 90061)] == [
        "0.0s", "0.0s", "9.9s", "12s", "1m 00s", "2m 03s", "1h 02m", "1d 01h"]
    assert [plural(n, "child", "children") for n in (0, 1, 2)] == [
        "0 children", "1 child", "2 children"]
    assert child_counts(3, 0, 2, 6) == "3 ok · 2 running / 6" and child_counts(0, 0, 0, 0) == ""
    assert child_counts(0, 0, 0, 4) == "0 done / 4"
    assert step_counts([(2, "completed"), (0, "failed"), (1, "running")], 3) == \
        "2 completed · 1 running of 3 steps"
    assert step_counts([(0, "completed")], 1) == "1 step"
