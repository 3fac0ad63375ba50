"""The job page: header, one row per step, live via one WatchJob per open tab."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from urllib.parse import urlencode

from nicegui import background_tasks, ui

from stepwatch import status as labels
from stepwatch.client import Backoff, Client
from stepwatch.errors import NotFound, StepwatchError
from stepwatch.jobview import input_texts
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.words import step_counts

from .. import access, metrics, status_style
from ..state import EVENT_PANEL_SIZE, Changed, Connection, JobPageState, last_heard_text
from .graph_panel import GraphPanel
from .step_list import StepList
from .step_panel import StepPanel
from .widgets import Badge, ago, date_time, duration, user_menu

BACKOFF = Backoff(initial=0.3, maximum=5.0)
REDRAW_S = 0.1


class JobView:
    """The page's elements; ``render`` updates only what a message changed."""

    def __init__(self, state: JobPageState, on_select: Callable[[str], None]) -> None:
        self.state = state
        self.on_header: Callable[[pb.Job], None] | None = None
        self.on_step: Callable[[pb.Step], None] | None = None
        with ui.row().classes("w-full items-center gap-x-4 gap-y-0 -mt-2"):
            ui.link("← all jobs", "/")
            self.title = ui.label(state.job_id).classes("text-h6")
            self.badge = Badge(status_style.JOB, 0)
            self.badge.element.mark("job-badge")
            self.actions = ui.row().classes("gap-2")
            ui.space()
            user_menu()
            self.connection = ui.label(Connection.CONNECTING.value).mark("connection")
            self.heard = ui.label("").classes("text-xs text-grey-7").mark("last-heard")
        with ui.row().classes("w-full items-center gap-x-4 gap-y-0 text-sm -mt-3") as summary:
            self.failure = ui.label("").classes("sw-failure")
            with ui.row().classes("items-center gap-2").mark("failures") as self.failures:
                ui.label("Failed:").classes("text-weight-bold sw-failure")
                self.failure_links = ui.row().classes("gap-2")
            self.failures.set_visibility(False)
            self.meta = ui.label("").classes("sw-note").mark("job-meta")
            self.inputs = ui.label("").classes("sw-note").mark("job-inputs")
            self.scheduled = ui.link("", "/schedules").classes("sw-note").mark("job-schedule")
            ui.space()
        self.error = ui.label("").classes("text-negative").mark("error")
        self.error.bind_visibility_from(self.error, "text", backward=bool)
        # GitHub Actions' run view: the steps on the left, the selected step on the right.
        with ui.element("div").classes("w-full sw-runview"):
            with ui.column().classes("gap-1 sw-run-steps"):
                self.steps = StepList(on_select, summary)
            with ui.column().classes("gap-1 sw-run-panel") as self.panel_slot:
                self.hint = ui.label("Select a step to see its children and its log.").classes(
                    "sw-note text-sm q-pa-md").mark("panel-hint")
        self.graph_slot = ui.column().classes("w-full gap-0")  # graph and timeline go here
        with ui.expansion("Raw events", icon="list").classes("w-full").mark("raw-events"):
            with ui.column().classes("w-full gap-0 text-xs font-mono").mark("events"):
                # One element for the whole window: a redraw is one update, not one per line.
                self.event_text = ui.label("").style(
                    "white-space: pre-wrap; overflow-wrap: anywhere").mark("event-lines")

    def render(self, changed: Changed) -> None:
        job = self.state.job
        if job is not None and changed.header:
            self.title.set_text(f"{job.definition_name} · {job.job_id[:8]}")
            self.badge.set(job.status)
            if self.on_header is not None:
                self.on_header(job)
            has_failure = job.HasField("failure")
            self.failure.set_visibility(has_failure)
            self.failure.set_text(labels.failure_text(job.failure) if has_failure else "")
            alarm = job.status != pb.JOB_STATUS_CANCELLED
            self.failure.classes(replace="sw-failure" if alarm else "sw-note")
            sc = job.step_counts
            counts = step_counts([(sc.completed, "completed"), (sc.failed, "failed"),
                                  (sc.skipped, "skipped"), (sc.cancelled, "cancelled"),
                                  (sc.running, "running"), (sc.pending, "pending")], sc.total)
            self.meta.set_text(f"{counts} · on step failure: {job.on_step_failure} · created "
                               f"{ago(job.created_at)} · {duration(job.started_at, job.finished_at)}")
            self.meta.props["title"] = f"created {date_time(job.created_at)}"
            self.inputs.set_text("inputs: " + ", ".join(f"{n}={v}" for n, v in input_texts(job))
                                 if job.inputs else "")
            self.scheduled.set_text(f"scheduled ({job.schedule_id[:8]}) for "
                                    f"{date_time(job.nominal_time)}" if job.schedule_id else "")
        if job is not None:
            self.steps.update(job, changed.steps, self.state.step, changed.header)
            if self.on_step is not None:
                for step_id in changed.steps:
                    step = self.state.step(step_id)
                    if step is not None:
                        self.on_step(step)
        if job is not None and changed.steps:
            self.render_failures(job)
        # The seq the screen now shows: what a reader (or a test) compares with the stream.
        self.steps.box.props["data-seq"] = str(self.state.last_seq)
        if changed.events:
            self.event_text.set_text("\n".join(
                f"#{line.seq}  {_time_us(line.at_us)}  {line.text}" for line in self.state.events))
        self.render_connection()

    def render_failures(self, job: pb.Job) -> None:
        """Links to every FAILED step, at the top: no scrolling through a long job to find them."""
        failed = [s for s in job.steps if s.status == pb.STEP_STATUS_FAILED]
        names = [s.name for s in failed]
        if names == getattr(self, "_failed_names", None):
            return
        self._failed_names = names
        self.failure_links.clear()
        with self.failure_links:
            for s in failed[:20]:
                link = ui.link(s.name, f"#step-{s.index}").classes("sw-failure")
                link.mark(f"failed-{s.name}").on("click", lambda _, n=s.name: self.steps.on_select(n))
            if len(failed) > 20:
                ui.label(f"and {len(failed) - 20} more (failed only)").classes("sw-note")
        self.failures.set_visibility(bool(failed))

    def tick(self) -> None:
        """Once a second: running durations grow, and "last heard" ages."""
        self.render_connection()
        self.steps.tick()

    def not_found(self) -> None:
        self.title.set_text("No such job")
        self.badge.element.set_visibility(False)
        self.meta.set_text(f"there is no job {self.state.job_id!r} on this orchestrator")

    def render_connection(self) -> None:
        s = self.state
        self.connection.set_text(s.connection.value)
        self.connection.props["data-connection"] = s.connection.name
        self.connection.classes(replace="text-weight-bold " + {
            Connection.LIVE: "text-positive", Connection.RECONNECTING: "text-negative",
            Connection.CONNECTING: "text-grey-7", Connection.CLOSED: "text-grey-8",
            Connection.STOPPED: "text-grey-8"}[s.connection])
        self.heard.set_text(last_heard_text(s, time.monotonic()))
        self.heard.set_visibility(s.connection not in (Connection.CLOSED, Connection.STOPPED))
        self.error.set_text(s.error)
        for el in (self.steps.box, self.badge.element):
            if s.stale:
                el.classes(add="sw-stale")
            else:
                el.classes(remove="sw-stale")


class Actions:
    """Cancel (after a confirmation) and Rerun (all steps, or failed only), offered by the
    server's status: Cancel while the job is pending or running, Rerun once it is finished."""

    def __init__(self, target: str, job_id: str, view: JobView) -> None:
        self.target, self.job_id = target, job_id
        self.cancel = ui.button("Cancel", icon="block", color="negative",
                                on_click=self.confirm_cancel).props("outline dense").mark("cancel").classes(
                                    "sw-cancel")
        self.rerun = ui.button("Rerun", icon="replay", on_click=self.ask_rerun).props(
            "outline dense").mark("rerun").classes("sw-rerun")
        for b in (self.cancel, self.rerun):
            b.set_visibility(False)
        self.may_act = access.can_act()
        view.on_header = self.show

    def show(self, job: pb.Job) -> None:
        terminal = job.status in labels.TERMINAL_JOB
        may = self.may_act  # a viewer is offered neither
        self.cancel.set_visibility(may and job.status in labels.CANCELLABLE_JOB)
        self.rerun.set_visibility(may and terminal)

    def confirm_cancel(self) -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label("Cancel this job? Its running commands are stopped; its pending steps "
                     "will not run.")
            with ui.row():
                ui.button("Keep it running", on_click=dialog.close).props("flat")
                ui.button("Cancel the job", color="negative",
                          on_click=lambda: self._cancel(dialog)).mark("confirm-cancel")
        dialog.open()

    async def _cancel(self, dialog: ui.dialog) -> None:
        dialog.close()
        if not access.can_act():
            return
        try:
            async with Client(self.target) as c:
                await c.cancel(self.job_id)
        except StepwatchError as err:
            ui.notify(f"cancel failed: {err.message}", type="negative")

    def ask_rerun(self) -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label("Run this job again, as a new job?")
            with ui.row():
                ui.button("All steps", on_click=lambda: self._rerun(dialog, False)).mark(
                    "rerun-all")
                ui.button("Failed only (carry the completed steps over)",
                          on_click=lambda: self._rerun(dialog, True)).mark("rerun-failed")
                ui.button("Close", on_click=dialog.close).props("flat")
        dialog.open()

    async def _rerun(self, dialog: ui.dialog, failed_only: bool) -> None:
        dialog.close()
        if not access.can_act():
            return
        try:
            async with Client(self.target) as c:
                job = await c.rerun(self.job_id, failed_only=failed_only)
        except StepwatchError as err:
            ui.notify(f"rerun failed: {err.message}", type="negative")
            return
        ui.navigate.to(f"/jobs/{job.job_id}")


def _time_us(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6).strftime("%H:%M:%S.%f")[:-3]


def register(target: str) -> None:
    @ui.page("/jobs/{job_id}", title="Stepwatch job")
    async def job_page(job_id: str, step: str | None = None, child: int | None = None) -> None:
        state = JobPageState(job_id)
        panel: list[StepPanel] = []
        client = ui.context.client

        def select(name: str) -> None:
            background_tasks.create(panel[0].open(name), name=f"open-{job_id}-{name}")

        def selection_changed(name: str, index: int | None) -> None:
            """The selected step (and child) is in the URL: a reload or a shared link
            opens the same view."""
            view.steps.select(name)
            view.hint.set_visibility(not name)
            query = ("?" + urlencode({"step": name} | ({"child": index} if index is not None
                                                         else {}))) if name else ""
            # Through the page's client: this runs in a background task, outside its context.
            client.run_javascript(f"history.replaceState(null, '', {json.dumps(f'/jobs/{job_id}{query}')})")
            chosen = next((s for s in (state.job.steps if state.job else ()) if s.name == name),
                          None)
            if chosen is not None:
                panel[0].describe(chosen)

        view = JobView(state, select)
        with view.panel_slot:
            panel.append(StepPanel(target, job_id, selection_changed))
        view.on_step = panel[0].describe
        with view.actions:
            Actions(target, job_id, view)
        with view.graph_slot:
            graph = GraphPanel(target, job_id, lambda: state.job)
        if step:  # a deep link: /jobs/{id}?step=NAME&child=N
            background_tasks.create(panel[0].open(step, child), name=f"open-{job_id}-{step}")

        def first_view(job: pb.Job) -> None:
            """A failed job opens on its first failed step, at its first failed child's
            log: the failure's lines without a click (unless the URL chose a step)."""
            failed = next((s for s in job.steps if s.status == pb.STEP_STATUS_FAILED), None)
            if not step and failed is not None and not panel[0].step:
                background_tasks.create(panel[0].open(failed.name, first_failed=True),
                                        name=f"open-{job_id}-{failed.name}")

        def on_retry(err: StepwatchError, delay: float) -> None:
            metrics.RECONNECTS.labels("WatchJob").inc()
            state.reconnecting(f"cannot hear the orchestrator ({err.code.name}); "
                               f"retrying in {delay:.1f} s")
            view.render_connection()

        async def history(upto: int) -> None:
            """Fill the event panel with the events just before the snapshot.

            Its own connection: the live stream of a finished job ends (and closes its
            channel) right after the snapshot, before this has read anything."""
            older: list[pb.JobEvent] = []
            if upto > 1:
                try:
                    async with Client(target) as client:
                        async for msg in client.watch(job_id,
                                                      after_seq=max(1, upto - EVENT_PANEL_SIZE),
                                                      backoff=Backoff(max_tries=0)):
                            if msg.WhichOneof("kind") != "event":
                                continue
                            older.append(msg.event)  # contiguous from below upto, so stop at upto
                            if msg.event.seq >= upto:
                                break
                except StepwatchError:
                    pass  # only the panel's history is missing; the page itself is live
            if state.add_history(older):
                view.render(Changed(events=True))

        async def follow() -> None:
            async with Client(target) as client:
                try:
                    async for msg in client.watch(job_id, backoff=BACKOFF, on_retry=on_retry):
                        # Applied at once (the state is exact), drawn at most every REDRAW_S:
                        # a job at 100 events/s costs the tab 10 redraws/s, each element once.
                        pending[0] = pending[0].merge(state.apply(msg, time.monotonic()))
                        if msg.WhichOneof("kind") == "snapshot":
                            tasks.append(background_tasks.create(
                                history(msg.snapshot.seq), name=f"history-{job_id}"))
                            first_view(msg.snapshot.job)
                        elif state.job is not None and state.job.status in labels.TERMINAL_JOB:
                            first_view(state.job)
                    state.closed()
                    redraw()
                except StepwatchError as err:
                    state.failed(f"{err.code.name}: {err.message}")
                    if isinstance(err, NotFound):
                        view.not_found()
                view.render_connection()

        tasks = [background_tasks.create(follow(), name=f"watch-{job_id}")]
        # on_delete, not on_disconnect: a tab that briefly loses its socket keeps its stream.
        def stop() -> None:
            for t in tasks:
                t.cancel()
            graph.stop()
            metrics.PAGES_OPEN.labels("job").dec()

        metrics.PAGES_OPEN.labels("job").inc()

        ui.context.client.on_delete(stop)
        pending = [Changed()]

        def redraw() -> None:
            if not pending[0].empty:
                changed, pending[0] = pending[0], Changed()
                view.render(changed)
                if changed.steps:
                    graph.steps_changed(first=not drawn[0])
                    drawn[0] = True

        def tick() -> None:
            view.tick()
            graph.tick()

        drawn = [False]
        ui.timer(REDRAW_S, redraw)
        ui.timer(1.0, tick)
