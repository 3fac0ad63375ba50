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


_HEADER_FIELDS = [f.name for f in pb.Job.DESCRIPTOR.fields if f.name != "steps"]


class LiveJob:
    """A reader's copy of a job kept up to date in place, for a stream of thousands of
    events: a step event costs one step's copy, not the job's (``apply_event`` copies the
    job, which is right for a value but quadratic over a 2,000-step job's stream)."""

    def __init__(self, job: pb.Job | None = None) -> None:
        self.job = pb.Job()
        self._at: dict[str, int] = {}
        if job is not None:
            self.reset(job)

    def reset(self, job: pb.Job) -> None:
        """A snapshot: the job as the server sent it."""
        self.job = job
        self._at = {s.step_id: i for i, s in enumerate(job.steps)}

    def apply(self, event: pb.JobEvent) -> None:
        kind = event.WhichOneof("change")
        if kind == "job_changed":
            header = pb.Job()
            header.CopyFrom(event.job_changed)
            del header.steps[:]
            for name in _HEADER_FIELDS:
                self.job.ClearField(name)
            self.job.MergeFrom(header)  # no steps in it: the steps stay as they are
        elif kind == "step_changed":
            step = event.step_changed
            at = self._at.get(step.step_id)
            if at is not None:
                self.job.steps[at].CopyFrom(step)
            else:
                _put_step(self.job, step)  # a step not seen yet: placed by index (rare)
                self._at = {s.step_id: i for i, s in enumerate(self.job.steps)}
        self.job.head_seq = event.seq


def input_texts(job: pb.Job) -> list[tuple[str, str]]:
    """The job's inputs as name and value text (true/false, 3, 2.5, the string), by name."""
    out = []
    for name in sorted(job.inputs):
        v = job.inputs[name]
        kind = v.WhichOneof("kind")
        if kind == "bool_value":
            text = "true" if v.bool_value else "false"
        elif kind == "number_value":
            n = v.number_value
            text = str(int(n)) if n.is_integer() else str(n)
        else:
            text = v.string_value
        out.append((name, text))
    return out


TERMINAL_JOB_STATUSES = frozenset({
    pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_COMPLETED_WITH_FAILURES, pb.JOB_STATUS_FAILED,
    pb.JOB_STATUS_CANCELLED,
})


def is_terminal(job: pb.Job) -> bool:
    """Whether the server said the job is finished (its own value, not a derivation)."""
    return job.status in TERMINAL_JOB_STATUSES
