"""Prometheus metrics, read from what the orchestrator already decided: committed events
(terminal statuses, durations, child outcomes), watch streams, store writes.

Served as Prometheus text on --metrics-port (off by default). One registry per server, so
several servers in one process (tests, benches) do not collide.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

from .model import ChildCounts, Event
from .statuses import JobStatus, StepStatus

__all__ = ["Metrics"]

_CHILD_OUTCOMES = ("completed", "failed", "cancelled")
_NO_CHILDREN = ChildCounts()

DURATIONS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
WRITES = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        self.jobs_finished = Counter("stepwatch_jobs_finished", "Jobs that reached a terminal "
                                     "status", ["status"], registry=r)
        self.steps_finished = Counter("stepwatch_steps_finished", "Steps that reached a terminal "
                                      "status", ["status", "type"], registry=r)
        self.step_seconds = Histogram("stepwatch_step_duration_seconds", "From a step's first "
                                      "start to its terminal status", ["type"], buckets=DURATIONS,
                                      registry=r)
        self.children_finished = Counter("stepwatch_children_finished", "Children by outcome",
                                         ["status"], registry=r)
        self.events = Counter("stepwatch_events_appended", "Events committed to job logs",
                              registry=r)
        self.jobs_running = Gauge("stepwatch_jobs_running", "Jobs running now", registry=r)
        self.steps_running = Gauge("stepwatch_steps_running", "Steps running now", registry=r)
        self.watchers = Gauge("stepwatch_watchers_open", "Open watch streams", ["rpc"], registry=r)
        self.takeovers = Counter("stepwatch_lease_takeovers", "Jobs this replica took over from "
                                 "another (PostgreSQL replicas)", registry=self.registry)
        self.store_writes = Histogram("stepwatch_store_write_seconds", "Store write transactions",
                                      ["op"], buckets=WRITES, registry=r)
        self.webhook_attempts = Counter(
            "stepwatch_webhook_attempts", "Webhook delivery attempts this replica made, by "
            "outcome (delivered, retry, failed)", ["outcome"], registry=r)
        self.schedule_runs = Counter(
            "stepwatch_schedule_runs", "Nominal times of schedules this replica fired, by "
            "outcome (started, skipped)", ["outcome"], registry=r)
        self._running_jobs: set[str] = set()
        self._running_steps: set[str] = set()
        self._children: dict[str, tuple[int, ChildCounts]] = {}  # step_id -> (attempt, counts)
        # Labelled children resolved once (``labels()`` checks and locks at every call; this
        # runs for every committed event, on the event loop).
        self._children_by = {n: self.children_finished.labels(n) for n in _CHILD_OUTCOMES}
        self._labelled: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._server: WSGIServer | None = None

    def schedule_fired(self, started: int, skipped: int) -> None:
        if started:
            self.schedule_runs.labels("started").inc(started)
        if skipped:
            self.schedule_runs.labels("skipped").inc(skipped)

    def serve(self, host: str, port: int) -> int:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def observe(self, events: list[Event]) -> None:
        """Committed events (called with each commit, on the event loop)."""
        self.events.inc(len(events))
        for ev in events:
            if ev.step is not None:
                self._step(ev)
            elif ev.job is not None:
                job = ev.job
                if job.status.terminal:
                    self._running_jobs.discard(job.job_id)
                    self.jobs_finished.labels(job.status.name).inc()
                elif job.status == JobStatus.RUNNING:
                    self._running_jobs.add(job.job_id)
        self.jobs_running.set(len(self._running_jobs))
        self.steps_running.set(len(self._running_steps))

    def _step(self, ev: Event) -> None:
        s = ev.step
        assert s is not None
        kept = self._children.get(s.step_id)
        # A new attempt counts its children from zero.
        before = kept[1] if kept is not None and kept[0] == s.attempt else _NO_CHILDREN
        if s.children != before:
            for name in _CHILD_OUTCOMES:
                grew = getattr(s.children, name) - getattr(before, name)
                if grew > 0:
                    self._children_by[name].inc(grew)
        if s.status.terminal:
            self._children.pop(s.step_id, None)
            self._running_steps.discard(s.step_id)
            finished, seconds = self._by_status_and_type(s.status.name, s.type)
            finished.inc()
            if s.started_at is not None and s.finished_at is not None:
                seconds.observe((s.finished_at - s.started_at) / 1e6)
        else:
            self._children[s.step_id] = (s.attempt, s.children)
            if s.status == StepStatus.RUNNING:
                self._running_steps.add(s.step_id)

    def _by_status_and_type(self, status: str, type_: str) -> tuple[Counter, Histogram]:
        found = self._labelled.get((status, type_))
        if found is None:
            found = self._labelled[status, type_] = (self.steps_finished.labels(status, type_),
                                                     self.step_seconds.labels(type_))
        return found

    def write_took(self, op: str, seconds: float) -> None:
        self.store_writes.labels(op).observe(seconds)

    @contextlib.contextmanager
    def watching(self, rpc: str) -> Iterator[None]:
        gauge = self.watchers.labels(rpc)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()
