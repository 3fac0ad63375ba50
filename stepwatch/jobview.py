"""Applying events to a reader's copy of a job: replace, never compute.

Pure functions over generated messages, used by every reader (CLI, UI, tests).
"""

from __future__ import annotations

from stepwatch.v1 import orchestrator_pb2 as pb


def apply_event(job: pb.Job, event: pb.JobEvent) -> pb.Job:
    """A new Job: ``job`` with ``event``'s change put in place, at ``event.seq``."""
    out = pb.Job()
    kind = event.WhichOneof("change")
    if kind == "job_changed":
        out.CopyFrom(event.job_changed)
        del out.steps[:]
        out.steps.extend(job.steps)
    else:
        out.CopyFrom(job)
        if kind == "step_changed":
            _put_step(out, event.step_changed)
    out.head_seq = event.seq
    return out


def _put_step(job: pb.Job, step: pb.Step) -> None:
    for existing in job.steps:
        if existing.step_id == step.step_id:
            existing.CopyFrom(step)
            return
    job.steps.append(step)
    ordered = sorted(job.steps, key=lambda s: s.index)
    del job.steps[:]
    job.steps.extend(ordered)


TERMINAL_JOB_STATUSES = frozenset({
    pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_COMPLETED_WITH_FAILURES, pb.JOB_STATUS_FAILED,
    pb.JOB_STATUS_CANCELLED,
})


def is_terminal(job: pb.Job) -> bool:
    """Whether the server said the job is finished (its own value, not a derivation)."""
    return job.status in TERMINAL_JOB_STATUSES
