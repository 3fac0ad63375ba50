"""The page's copy of a job: apply(message) replaces, never computes. Pure, no I/O."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from stepwatch.jobview import apply_event
from stepwatch.v1 import orchestrator_pb2 as pb

from . import status_style

EVENT_PANEL_SIZE = 30
ALL = "all"


class Connection(Enum):
    CONNECTING = "Connecting"
    LIVE = "Live"
    RECONNECTING = "Reconnecting"
    CLOSED = "Stream closed"  # the server ended the stream: the job is terminal


@dataclass(frozen=True)
class EventLine:
    seq: int
    at_us: int
    text: str


@dataclass(frozen=True)
class Changed:
    """What one message changed, so the page updates only those elements."""

    header: bool = False
    steps: tuple[str, ...] = ()
    events: bool = False

    def merge(self, other: Changed) -> Changed:
        """Both messages' changes: what a coalesced redraw must touch (each element once)."""
        steps = self.steps + tuple(s for s in other.steps if s not in self.steps)
        return Changed(self.header or other.header, steps, self.events or other.events)

    @property
    def empty(self) -> bool:
        return not (self.header or self.steps or self.events)


@dataclass
class JobPageState:
    job_id: str
    job: pb.Job | None = None
    last_seq: int = 0
    connection: Connection = Connection.CONNECTING
    last_heard: float | None = None  # monotonic seconds of the last message
    error: str = ""
    events: deque[EventLine] = field(default_factory=lambda: deque(maxlen=EVENT_PANEL_SIZE))

    def apply(self, msg: pb.WatchJobResponse, now: float) -> Changed:
        self.last_heard = now
        self.connection = Connection.LIVE
        self.error = ""
        kind = msg.WhichOneof("kind")
        if kind == "snapshot":
            self.job = msg.snapshot.job
            self.last_seq = msg.snapshot.seq
            return Changed(header=True, steps=tuple(s.step_id for s in self.job.steps))
        if kind == "event":
            ev = msg.event
            self.job = apply_event(self.job or pb.Job(job_id=self.job_id), ev)
            self.last_seq = ev.seq
            self.events.appendleft(EventLine(ev.seq, ev.emitted_at.ToMicroseconds(), describe(ev)))
            if ev.WhichOneof("change") == "step_changed":
                return Changed(steps=(ev.step_changed.step_id,), events=True)
            return Changed(header=True, events=True)
        return Changed()  # a heartbeat: only "last heard" moved

    def add_history(self, older: list[pb.JobEvent]) -> bool:
        """Events from before the snapshot, for the event panel only (the job is not touched)."""
        oldest = self.events[-1].seq if self.events else self.last_seq + 1
        lines = [EventLine(e.seq, e.emitted_at.ToMicroseconds(), describe(e))
                 for e in sorted(older, key=lambda e: -e.seq) if e.seq < oldest]
        for line in lines:
            if len(self.events) == self.events.maxlen:
                break
            self.events.append(line)
        return bool(lines)

    def reconnecting(self, reason: str) -> None:
        self.connection = Connection.RECONNECTING
        self.error = reason

    def closed(self) -> None:
        self.connection = Connection.CLOSED

    def failed(self, reason: str) -> None:
        """The stream ended with an error retrying cannot fix (e.g. NOT_FOUND)."""
        self.connection = Connection.CLOSED
        self.error = reason

    @property
    def stale(self) -> bool:
        """While reconnecting, what is on screen may be out of date."""
        return self.connection == Connection.RECONNECTING

    def step(self, step_id: str) -> pb.Step | None:
        if self.job is None:
            return None
        return next((s for s in self.job.steps if s.step_id == step_id), None)


def describe(ev: pb.JobEvent) -> str:
    if ev.WhichOneof("change") == "step_changed":
        s = ev.step_changed
        text = f"step {s.name}: {status_style.look(status_style.STEP, s.status).label}"
        if s.children.total:
            text += f" ({s.children.completed} ok, {s.children.failed} failed of {s.children.total})"
        return text
    j = ev.job_changed
    c = j.step_counts
    return (f"job: {status_style.look(status_style.JOB, j.status).label} "
            f"({c.completed} completed, {c.failed} failed, {c.running} running of {c.total})")


def last_heard_text(state: JobPageState, now: float) -> str:
    if state.last_heard is None:
        return "not heard yet"
    return f"last heard {max(0, int(now - state.last_heard))} s ago"


@dataclass
class QueueState:
    """The queue page's jobs, by id, as WatchJobs sent them."""

    jobs: dict[str, pb.Job] = field(default_factory=dict)
    connection: Connection = Connection.CONNECTING
    status_filter: str = ALL  # a JobStatus value name, or ALL

    def apply(self, msg: pb.WatchJobsResponse) -> list[str]:
        """Replace what the message carries; returns the job ids whose rows change."""
        self.connection = Connection.LIVE
        kind = msg.WhichOneof("kind")
        if kind == "snapshot":
            self.jobs = {j.job_id: j for j in msg.snapshot.jobs}
            return list(self.jobs)
        if kind == "job_changed":
            self.jobs[msg.job_changed.job_id] = msg.job_changed
            return [msg.job_changed.job_id]
        return []

    def shows(self, job_id: str) -> bool:
        """Whether the filter lets the job's row show: the server's value, compared by name."""
        name = status_style.value_name(status_style.JOB, self.jobs[job_id].status)
        return self.status_filter in (ALL, name)

    def order(self) -> list[str]:
        """Job ids newest first, by the server's created_at."""
        return sorted(self.jobs, key=lambda i: (self.jobs[i].created_at.ToMicroseconds(), i),
                      reverse=True)
