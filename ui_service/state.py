"""The page's copy of a job: apply(message) replaces, never computes. Pure, no I/O."""

from __future__ import annotations

import datetime as dt
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
    CLOSED = "Finished"  # the server ended the stream: the job is terminal, nothing more comes
    STOPPED = "Not following"  # the stream ended with an error retrying cannot fix


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
        self.connection = Connection.STOPPED
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


@dataclass(frozen=True)
class JobQuery:
    """What the queue page asks ListJobs for: the server filters and pages."""

    status: int = 0  # a JobStatus number; 0 means all
    name_prefix: str = ""
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None

    def matches(self, job: pb.Job) -> bool:
        """Whether a job the live feed announces belongs on this query's first page."""
        created = job.created_at.ToDatetime(dt.UTC)
        return ((not self.status or job.status == self.status)
                and job.definition_name.startswith(self.name_prefix)
                and (self.created_after is None or created >= self.created_after)
                and (self.created_before is None or created < self.created_before))


def day_range(start: str, end: str, tz: dt.tzinfo) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The bounds of "from START to END", whole local days, from YYYY-MM-DD inputs ("" = open)."""
    def day(text: str) -> dt.datetime | None:
        try:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), tz).astimezone(dt.UTC)
        except ValueError:
            return None
    after, last = day(start), day(end)
    return after, (last + dt.timedelta(days=1) if last is not None else None)


@dataclass
class QueueState:
    """The queue page: one page of ListJobs at a time, kept live by WatchJobs."""

    query: JobQuery = JobQuery()
    tokens: list[str] = field(default_factory=lambda: [""])  # the token of each page seen
    next_token: str = ""
    jobs: dict[str, pb.Job] = field(default_factory=dict)  # the page's jobs, newest first
    connection: Connection = Connection.CONNECTING

    @property
    def page(self) -> int:
        return len(self.tokens)

    def show(self, jobs: list[pb.Job], next_token: str) -> None:
        """A page ListJobs sent replaces the one shown."""
        self.jobs = {j.job_id: j for j in jobs}
        self.next_token = next_token

    def apply(self, msg: pb.WatchJobsResponse) -> tuple[list[str], bool]:
        """(job ids whose rows change, whether the page must be read again).

        A snapshot means the feed (re)connected: changes may have been missed, so the page
        is read again. A changed job on the page replaces its row; a new job that matches
        goes on top of the first page only (later pages hold older jobs)."""
        self.connection = Connection.LIVE
        kind = msg.WhichOneof("kind")
        if kind == "snapshot":
            return [], True
        if kind == "job_deleted":  # the page reads itself again (a later job moves up)
            return [], msg.job_deleted in self.jobs
        if kind != "job_changed":
            return [], False
        job = msg.job_changed
        if job.job_id in self.jobs:
            self.jobs[job.job_id] = job
            return [job.job_id], False
        if self.page == 1 and self.query.matches(job):
            self.jobs = {job.job_id: job} | self.jobs
            return [job.job_id], False
        return [], False

    def order(self) -> list[str]:
        """Job ids newest first, by the server's created_at."""
        return sorted(self.jobs, key=lambda i: (self.jobs[i].created_at.ToMicroseconds(), i),
                      reverse=True)
