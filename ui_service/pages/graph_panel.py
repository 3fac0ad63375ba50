"""The job page's graph of steps and timeline of attempts (ECharts), redrawn at most once a
second. The graph is drawn from the job the page holds; the timeline reads the job's event
log from its start on its own stream, only once someone opens it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from nicegui import background_tasks, ui

from stepwatch.client import Backoff, Client
from stepwatch.errors import StepwatchError
from stepwatch.v1 import orchestrator_pb2 as pb

from .. import status_style
from ..graph import AttemptLog, graph_colours, graph_options, levels, timeline_options

OPEN_UP_TO = 50  # the graph starts open for jobs this small; bigger ones open on request


class GraphPanel:
    def __init__(self, target: str, job_id: str, job: Callable[[], pb.Job | None]) -> None:
        self.target, self.job_id, self.job = target, job_id, job
        self.chart: ui.echart | None = None
        self.graph_dirty = False
        self.attempts = AttemptLog()
        self.timeline_dirty = False
        self.timeline_task: asyncio.Task[None] | None = None
        with ui.expansion("Graph", icon="account_tree").classes(
                "w-full sw-graph-box").mark("graph") as self.graph_box:
            self.graph_slot = ui.column().classes("w-full")
        with ui.expansion("Timeline of attempts", icon="timeline",
                          on_value_change=lambda e: self._timeline_opened(e.value)).classes(
                "w-full sw-timeline-box").mark("timeline") as self.timeline_box:
            self.timeline_note = ui.label("").classes("text-xs text-grey-7")
            self.timeline = ui.echart(timeline_options(self.attempts, 0)).classes(
                "w-full sw-timeline").mark("timeline-chart")
        self.graph_box.on_value_change(lambda e: self._graph_opened(e.value))

    def steps_changed(self, first: bool) -> None:
        """Called by the page's redraw: the job's steps changed (first: the first snapshot)."""
        job = self.job()
        if first and job is not None and len(job.steps) <= OPEN_UP_TO:
            self.graph_box.set_value(True)
        self.graph_dirty = True

    def tick(self) -> None:
        """Once a second: redraw what changed since the last tick, if it is open."""
        job = self.job()
        if self.graph_box.value and self.graph_dirty and job is not None and job.steps:
            self.graph_dirty = False
            if self.chart is None:
                depth = max(_column_heights(job.steps))
                with self.graph_slot:
                    self.chart = ui.echart(graph_options(job.steps)).classes("w-full sw-graph").style(
                        f"height: {min(800, 60 + 48 * depth)}px").mark("graph-chart")
            else:
                nodes = self.chart.options["series"][0]["data"]
                for node, colour, step in zip(nodes, graph_colours(job.steps),
                                              sorted(job.steps, key=lambda s: s.index), strict=True):
                    node["itemStyle"]["color"] = colour
                    node["status"] = status_style.value_name(status_style.STEP, step.status)
                self.chart.update()
        running = any(a.end_us is None for a in self.attempts.attempts.values())
        if self.timeline_box.value and (self.timeline_dirty or running):
            self.timeline_dirty = False
            options = timeline_options(self.attempts, time.time_ns() // 1000)
            rows = len(options["yAxis"]["data"])  # type: ignore[index]
            self.timeline.options.clear()
            self.timeline.options.update(options)
            self.timeline.style(f"height: {min(1200, 80 + 22 * rows)}px")
            self.timeline.update()

    def _graph_opened(self, opened: bool) -> None:
        if opened:
            self.graph_dirty = True
            self.tick()

    def _timeline_opened(self, opened: bool) -> None:
        if opened and self.timeline_task is None:
            self.timeline_note.set_text("reading the job's events…")
            self.timeline_task = background_tasks.create(self._follow(), name=f"timeline-{self.job_id}")

    async def _follow(self) -> None:
        """The job's whole log, from its first event on (seq 1 creates the job: no attempt)."""
        try:
            async with Client(self.target) as c:
                async for msg in c.watch(self.job_id, after_seq=1, backoff=Backoff(0.3, 5.0)):
                    if msg.WhichOneof("kind") == "event" and self.attempts.add([msg.event]):
                        self.timeline_dirty = True
                    elif msg.WhichOneof("kind") == "heartbeat":
                        self.timeline_note.set_text("")
            self.timeline_note.set_text("")
        except StepwatchError as err:
            self.timeline_note.set_text(f"cannot read the events: {err.code.name}: {err.message}")

    def stop(self) -> None:
        if self.timeline_task is not None:
            self.timeline_task.cancel()


def _column_heights(steps: Sequence[pb.Step]) -> list[int]:
    """How many steps each column of the graph holds."""
    per: dict[int, int] = {}
    for column in levels(steps).values():
        per[column] = per.get(column, 0) + 1
    return list(per.values()) or [1]
