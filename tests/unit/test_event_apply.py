"""The contract suite's own definition of applying an event (tests/contract/helpers.apply)
and the client's (stepwatch.jobview.apply_event) agree on every job and event sequence:
what the tests check is what users' clients compute."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stepwatch.jobview import LiveJob, apply_event
from stepwatch.v1 import orchestrator_pb2 as pb
from tests.contract.helpers import apply

STEP_STATUSES = [v.number for v in pb.StepStatus.DESCRIPTOR.values]
JOB_STATUSES = [v.number for v in pb.JobStatus.DESCRIPTOR.values]


@st.composite
def jobs_and_events(draw: st.DrawFn) -> tuple[pb.Job, list[pb.JobEvent]]:
    n = draw(st.integers(1, 6))
    steps = [pb.Step(step_id=f"s{i}", index=i, name=f"step{i}", status=draw(st.sampled_from(STEP_STATUSES)))
             for i in range(n)]
    job = pb.Job(job_id="j", status=pb.JOB_STATUS_RUNNING, steps=steps, head_seq=1)
    events = []
    for seq in range(2, 2 + draw(st.integers(0, 25))):
        if draw(st.booleans()):
            i = draw(st.integers(0, n - 1))
            step = pb.Step(step_id=f"s{i}", index=i, name=f"step{i}",
                           status=draw(st.sampled_from(STEP_STATUSES)),
                           attempt=draw(st.integers(0, 5)),
                           children=pb.ChildCounts(total=draw(st.integers(0, 9))))
            if draw(st.booleans()):
                step.attempts.add(attempt=1, status=draw(st.sampled_from(STEP_STATUSES)))
            events.append(pb.JobEvent(seq=seq, job_id="j", step_changed=step))
        else:
            header = pb.Job(job_id="j", status=draw(st.sampled_from(JOB_STATUSES)),
                            head_seq=seq, step_counts=pb.StepCounts(total=n))
            events.append(pb.JobEvent(seq=seq, job_id="j", job_changed=header))
    return job, events


@given(jobs_and_events())
def test_the_tests_apply_equals_the_clients(case: tuple[pb.Job, list[pb.JobEvent]]) -> None:
    job, events = case
    ours, theirs = job, job
    for event in events:
        ours, theirs = apply(ours, event), apply_event(theirs, event)
        assert ours == theirs, event


@given(jobs_and_events(), st.integers(0, 6))
def test_applying_in_place_equals_applying_to_copies(
        case: tuple[pb.Job, list[pb.JobEvent]], known: int) -> None:
    """Also when the snapshot lacks steps that events then bring (``known`` steps known)."""
    job, events = case
    del job.steps[known:]
    live = LiveJob()
    start = pb.Job()
    start.CopyFrom(job)
    live.reset(start)
    copied = job
    for event in events:
        live.apply(event)
        copied = apply_event(copied, event)
        assert live.job == copied, event
