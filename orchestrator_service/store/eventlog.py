"""One transaction's view of a job: its locked row, counts, and the events it appends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
)

from .. import codec, rules
from ..model import (
    Event,
    JobState,
    StepState,
)
from ..rules import JobTransition
from ..statuses import JobStatus, StepStatus
from . import notices, outbox
from .errors import JobNotFound, StaleWrite
from .rows import (
    _COUNT_COLUMN,
    _INSERT_EVENTS,
    _INSERT_RECEIPT,
    _JOB_COUNT_COLUMNS,
    _JOB_STATUS_COLUMNS,
    _LOCK_JOB,
    _SET_JOB_COUNTS,
    _SET_JOB_STATUS,
    _header,
    _params,
)
from .values import now_us


def lock_job(c: Connection, job_id: str) -> Row[Any]:
    """The job's row, locked for this transaction (FOR UPDATE; SQLite locks on write)."""
    job = c.execute(_LOCK_JOB, {"k": job_id}).first()
    if job is None:
        raise JobNotFound(job_id)
    return job


class _Log:
    """The locked job row of one transaction: its header, counts and new events."""

    def __init__(self, c: Connection, job: Row[Any], notify_as: str | None = None,
                 write_id: str | None = None,
                 notify: Callable[[Connection, str], None] | None = None) -> None:
        self.c = c
        self.notify_as = notify_as  # with replicas: this incarnation, named in pg_notify
        self._notify = notify
        self.write_id = write_id  # committed with a receipt under this id (PostgreSQL)
        self.job_id: str = job.job_id
        self.values: dict[str, Any] = dict(job._mapping)
        self.head = self.values["head_seq"]
        self.first = self.head + 1
        self.events: list[Event] = []
        self.rows: list[dict[str, Any]] = []
        self.status_dirty = False
        self._header_due = False
        self.log_keys: set[tuple[str, int]] = set()
        #: When the lock that extended the job's lease was asked for (None: it did not).
        self.extended_since: float | None = None

    def refuse_if_terminal(self) -> None:
        status = JobStatus(self.values["status"])
        if status.terminal:
            raise StaleWrite(f"job {self.job_id} is {status.name}: nothing follows its terminal event")

    def step(self, step: StepState) -> None:
        self._append(step=step)

    def step_moved(self, old: StepStatus, new: StepStatus) -> None:
        """A step's status changed: move the job's counts; a header event follows its step's."""
        if old != new:
            for status, delta in ((old, -1), (new, +1)):
                self.values[_COUNT_COLUMN[status]] += delta
            self._header_due = True

    def set_job(self, t: JobTransition) -> None:
        rules.check_job_transition(JobStatus(self.values["status"]), t.status)
        fields = {"status": int(t.status), "finished_at": t.finished_at,
                  "failure_reason": None if t.failure is None else int(t.failure.reason),
                  "failure_message": None if t.failure is None else t.failure.message}
        if t.started_at is not None:
            fields["started_at"] = t.started_at
        self.values.update(fields)
        self.status_dirty = True
        self._header_due = True

    def header(self) -> None:
        self._append(header=True)

    def created(self, steps: tuple[StepState, ...]) -> tuple[list[Event], JobState]:
        """A new job's first events (its header, then each step), written; and the job."""
        self.header()
        for st in steps:
            self.step(st)
        return self.flush(), replace(self.state(), steps=steps)

    def state(self) -> JobState:
        return _header(self.values)

    def flush(self) -> list[Event]:
        """Write the job row and the events; returns the events to publish after commit."""
        if self._header_due:
            self._append(header=True)
        if self.rows:
            self.c.execute(_INSERT_EVENTS, self.rows)
            # Webhook deliveries commit with the status that causes them (the outbox).
            outbox.enqueue(self.c, self.job_id, self.values["definition_name"],
                           JobStatus(self.values["status"]), self.events, now_us())
        if self.status_dirty:
            self.c.execute(_SET_JOB_STATUS, _params(self.job_id, self.values,
                                                    (*_JOB_COUNT_COLUMNS, *_JOB_STATUS_COLUMNS)))
        elif self.rows:
            self.c.execute(_SET_JOB_COUNTS, _params(self.job_id, self.values, _JOB_COUNT_COLUMNS))
        if self._notify is not None and self.notify_as is not None and (self.rows or self.log_keys):
            self._notify(self.c, self.notice())
        if self.write_id is not None:
            self.c.execute(_INSERT_RECEIPT, {"write_id": self.write_id, "job_id": self.job_id,
                                             "first_seq": self.first, "last_seq": self.head,
                                             "at": now_us()})
        return self.events

    def notice(self) -> str:
        """What other replicas are told at commit: the job's new head (and whether its
        header changed), and which logs grew; one line each."""
        assert self.notify_as is not None
        said: list[notices.Notice] = []
        if self.rows:
            header = any(r["kind"] == "job" for r in self.rows)
            said.append(notices.LogHead(self.notify_as, self.job_id, self.head, header))
        said += [notices.LogGrew(self.notify_as, step, attempt) for step, attempt in self.log_keys]
        return notices.encode(said)

    def _append(self, *, step: StepState | None = None, header: bool = False) -> None:
        if step is not None and self._header_due:
            # Each step transition's header follows it, before the next step's event.
            self._header_due = False
            self._append(header=True)
        self.head += 1
        self.values["head_seq"] = self.head
        now = now_us()
        if header:
            self._header_due = False
            event = Event(self.job_id, self.head, now, job=_header(self.values))
        else:
            assert step is not None
            event = Event(self.job_id, self.head, now, step=step)
        # Encoded once, here: these bytes are what the log keeps and every watcher receives.
        body = codec.encode(event)
        self.rows.append({"job_id": self.job_id, "seq": self.head, "emitted_at": now,
                          "kind": "job" if header else "step", "body": body})
        self.events.append(replace(event, wire=body, response=codec.watch_response(body)))
