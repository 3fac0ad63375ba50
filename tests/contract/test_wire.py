"""Enum numbers and wire bytes are fixed: committed golden bytes must decode to the same values."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from stepwatch.v1 import orchestrator_pb2 as pb

GOLDEN = Path(__file__).parent / "golden"

ENUMS = {
    pb.StepStatus: {
        "STEP_STATUS_UNSPECIFIED": 0, "STEP_STATUS_PENDING": 1, "STEP_STATUS_RUNNING": 2,
        "STEP_STATUS_COMPLETED": 3, "STEP_STATUS_FAILED": 4, "STEP_STATUS_SKIPPED": 5,
        "STEP_STATUS_CANCELLED": 6,
    },
    pb.JobStatus: {
        "JOB_STATUS_UNSPECIFIED": 0, "JOB_STATUS_PENDING": 1, "JOB_STATUS_RUNNING": 2,
        "JOB_STATUS_COMPLETED": 3, "JOB_STATUS_COMPLETED_WITH_FAILURES": 4,
        "JOB_STATUS_FAILED": 5, "JOB_STATUS_CANCELLED": 6,
    },
    pb.FailureReason: {
        "FAILURE_REASON_UNSPECIFIED": 0, "FAILURE_REASON_INIT_FAILED": 1,
        "FAILURE_REASON_EXECUTION_FAILED": 2, "FAILURE_REASON_CHILD_FAILURES_EXCEEDED": 3,
        "FAILURE_REASON_TIMEOUT": 4, "FAILURE_REASON_DEPENDENCY_FAILED": 5,
        "FAILURE_REASON_JOB_STOPPED": 6, "FAILURE_REASON_CANCELLED_BY_USER": 7,
        "FAILURE_REASON_ORCHESTRATOR_RESTARTED": 8, "FAILURE_REASON_INTERNAL_ERROR": 9,
    },
}


@pytest.mark.parametrize("enum", list(ENUMS), ids=lambda e: e.DESCRIPTOR.name)
def test_enum_name_number_table_is_fixed(enum) -> None:
    assert {v.name: v.number for v in enum.DESCRIPTOR.values} == ENUMS[enum]


def sample_job() -> pb.Job:
    ts = Timestamp(seconds=1_764_000_000, nanos=123_000)
    failed = pb.Step(
        step_id="s2", index=2, name="architecture_notes", type="filter_tags",
        depends_on=["summarize"], status=pb.STEP_STATUS_FAILED,
        failure=pb.Failure(reason=pb.FAILURE_REASON_INIT_FAILED,
                           message="no documents found matching tags: ['architecture']"),
        tolerated=True, children=pb.ChildCounts(), attempt=1, max_attempts=1,
        created_at=ts, started_at=ts, finished_at=ts)
    done = pb.Step(step_id="s1", index=1, name="summarize", type="summarize",
                   depends_on=["import_files"], status=pb.STEP_STATUS_COMPLETED,
                   children=pb.ChildCounts(total=40, completed=39, failed=1), document_count=39,
                   attempt=1, max_attempts=1, max_child_failures=5, created_at=ts)
    return pb.Job(
        job_id="j1", definition_name="codebase_assess", description="Assess this repository",
        status=pb.JOB_STATUS_COMPLETED_WITH_FAILURES,
        failure=pb.Failure(reason=pb.FAILURE_REASON_INIT_FAILED, message="step 'architecture_notes'"),
        steps=[done, failed], step_counts=pb.StepCounts(total=2, completed=1, failed=1),
        on_step_failure="continue", created_at=ts, started_at=ts, finished_at=ts, head_seq=42)


def sample_watch_response() -> pb.WatchJobResponse:
    return pb.WatchJobResponse(event=pb.JobEvent(
        seq=42, job_id="j1", emitted_at=Timestamp(seconds=1_764_000_001),
        step_changed=sample_job().steps[1]))


SAMPLES = {"job.binpb": sample_job, "watch_job_response.binpb": sample_watch_response}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_golden_bytes_still_decode_to_the_same_values(name: str) -> None:
    expected = SAMPLES[name]()
    golden = (GOLDEN / name).read_bytes()
    decoded = type(expected).FromString(golden)
    assert decoded == expected
    assert expected.SerializeToString(deterministic=True) == golden


if __name__ == "__main__":  # regenerate on purpose: python -m tests.contract.test_wire
    for file_name, make in SAMPLES.items():
        (GOLDEN / file_name).write_bytes(make().SerializeToString(deterministic=True))
