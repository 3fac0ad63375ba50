"""The job page: header, one row per step, live via one WatchJob per open tab."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable

from nicegui import background_tasks, ui

from stepwatch import status as labels
from stepwatch.client import Backoff, Client
from stepwatch.errors import NotFound, StepwatchError
from stepwatch.v1 import orchestrator_pb2 as pb

from .. import access, metrics, status_style
from ..state import EVENT_PANEL_SIZE, Changed, Connection, JobPageState, last_heard_text
from .graph_panel import GraphPanel
from .step_panel import StepPanel
from .widgets import Badge, ChildBar, clock, duration, user_menu

BACKOFF = Backoff(initial=0.3, maximum=5.0)
REDRAW_S = 0.1
STEP_PAGE = 50  # step rows on screen at once: a 300-step job draws as fast as a small one


class StepRow:
    def __init__(self, step: pb.Step, on_open: Callable[[str], Awaitable[None]]) -> None:
        with ui.card().classes("w-full q-pa-sm").props(
                f"data-step-id={step.step_id} id=step-{step.index}") as self.card:
            self.card.mark(f"step-{step.name}")
            # Wraps on a narrow screen; columns line up on a wide one.
            with ui.row().classes("w-full items-center gap-x-4 gap-y-1 sw-cols"):
                ui.label(f"{step.index}").classes("text-grey-7 w-6")
                ui.label(step.name).classes("text-weight-bold sm:w-48 break-all")
                self.badge = Badge(status_style.STEP, step.status)
                ui.label(step.type).classes("text-grey-8 sm:w-24")
                self.depends = ui.label("").classes("text-xs text-grey-7 sm:w-40 break-all")
                self.children = ChildBar()
                self.docs = ui.label("").classes("text-xs sm:w-20 whitespace-nowrap")
                self.attempt = ui.label("").classes("text-xs sm:w-24 whitespace-nowrap")
                self.times = ui.label("").classes("text-xs text-grey-8")
                ui.button("children & log", on_click=lambda: on_open(step.name)).props(
                    "flat dense no-caps").mark(f"open-step-{step.name}")
            with ui.row().classes("items-center gap-2") as self.failure_row:
                self.failure = ui.label("").classes("sw-failure text-sm")
                self.tolerated = ui.badge("tolerated — the job went on", color="orange-9").props(
                    "outline")
            with ui.row().classes("items-center gap-2") as self.retry_row:
                self.retry = ui.label("").classes("text-xs text-orange-10")
        self.set(step)

    def show_times(self, step: pb.Step) -> None:
        self.times.set_text(f"{clock(step.started_at)} → {clock(step.finished_at)} · "
                            f"{duration(step.started_at, step.finished_at)}")

    def set(self, step: pb.Step) -> None:
        self.card.props["data-status"] = status_style.value_name(status_style.STEP, step.status)
        self.badge.set(step.status)
        self.depends.set_text("after " + ", ".join(step.depends_on) if step.depends_on else "")
        c = step.children
        self.children.set(c.completed, c.failed, c.running, c.total)
        self.docs.set_text(f"{step.document_count} docs")
        self.attempt.set_text(f"attempt {step.attempt} of {step.max_attempts}")
        self.show_times(step)
        self.step = step
        has_failure = step.HasField("failure")
        self.failure_row.set_visibility(has_failure)
        if has_failure:
            self.failure.set_text(f"{labels.label(labels.REASON, step.failure.reason)}: "
                                  f"{step.failure.message}")
            # What happened, without alarm where nothing failed: a skip or a cancel is a note.
            alarm = step.status == pb.STEP_STATUS_FAILED
            self.failure.classes(replace="text-sm " + ("sw-failure" if alarm else "sw-note"))
        self.tolerated.set_visibility(step.tolerated)
        retry = step.HasField("previous_attempt_failure")
        self.retry_row.set_visibility(retry)
        if retry:
            f = step.previous_attempt_failure
            self.retry.set_text(f"retrying after: {labels.label(labels.REASON, f.reason)}: {f.message}")


class JobView:
    """The page's elements; ``render`` updates only what a message changed."""

    def __init__(self, state: JobPageState, panel: Callable[[], StepPanel]) -> None:
        self.state = state
        self.panel = panel
        self.on_header: Callable[[pb.Job], None] | None = None
        self.rows: dict[str, StepRow] = {}
        with ui.row().classes("w-full items-center gap-x-4 gap-y-1"):
            ui.link("← all jobs", "/")
            self.title = ui.label(state.job_id).classes("text-h6")
            self.badge = Badge(status_style.JOB, 0)
            self.badge.element.mark("job-badge")
            self.actions = ui.row().classes("gap-2")
            ui.space()
            user_menu()
            self.connection = ui.label(Connection.CONNECTING.value).mark("connection")
            self.heard = ui.label("").classes("text-xs text-grey-7").mark("last-heard")
        self.failure = ui.label("").classes("sw-failure")
        with ui.row().classes("items-center gap-2").mark("failures") as self.failures:
            ui.label("Failed steps:").classes("text-sm text-weight-bold sw-failure")
            self.failure_links = ui.row().classes("gap-2")
        self.failures.set_visibility(False)
        self.meta = ui.label("").classes("text-sm text-grey-8")
        self.graph_slot = ui.column().classes("w-full gap-0")  # graph and timeline go here
        self.error = ui.label("").classes("text-negative").mark("error")
        self.panel_slot = ui.column().classes("w-full")  # the step panel opens here
        self.page = 0
        with ui.row().classes("items-center gap-2 sw-pager").mark("step-pager") as self.pager:
            self.prev = ui.button("‹ earlier steps", on_click=lambda: self.show_page(self.page - 1)
                                  ).props("flat dense no-caps").mark("steps-prev")
            self.page_label = ui.label("").classes("text-sm").mark("steps-page")
            self.next = ui.button("later steps ›", on_click=lambda: self.show_page(self.page + 1)
                                  ).props("flat dense no-caps").mark("steps-next")
        self.pager.set_visibility(False)
        with ui.column().classes("w-full gap-2").mark("steps") as self.steps:
            pass
        ui.label("Latest events").classes("text-subtitle1 q-mt-md")
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
            self.failure.set_text(f"{labels.label(labels.REASON, job.failure.reason)}: "
                                  f"{job.failure.message}" if has_failure else "")
            alarm = job.status != pb.JOB_STATUS_CANCELLED
            self.failure.classes(replace="sw-failure" if alarm else "sw-note")
            sc = job.step_counts
            self.meta.set_text(
                f"policy: on step failure {job.on_step_failure} · steps: {sc.completed} completed, "
                f"{sc.failed} failed, {sc.skipped} skipped, {sc.cancelled} cancelled, "
                f"{sc.running} running, {sc.pending} pending of {sc.total} · created "
                f"{clock(job.created_at)} · {duration(job.started_at, job.finished_at)}")
        if job is not None and changed.header:
            self.render_pager(job)
        for step_id in changed.steps:
            step = self.state.step(step_id)
            if step is None or step.index // STEP_PAGE != self.page:
                continue  # off this page: drawn when its page is shown
            row = self.rows.get(step_id)
            if row is None:
                with self.steps:
                    self.rows[step_id] = StepRow(step, lambda name: self.panel().open(name))
            else:
                row.set(step)
        if job is not None and changed.steps:
            self.render_failures(job)
        # The seq the screen now shows: what a reader (or a test) compares with the stream.
        self.steps.props["data-seq"] = str(self.state.last_seq)
        if changed.events:
            self.event_text.set_text("\n".join(
                f"#{line.seq}  {_time_us(line.at_us)}  {line.text}" for line in self.state.events))
        self.render_connection()

    def render_pager(self, job: pb.Job) -> None:
        n = len(job.steps)
        self.pager.set_visibility(n > STEP_PAGE)
        first = self.page * STEP_PAGE
        self.page_label.set_text(f"steps {first + 1}–{min(n, first + STEP_PAGE)} of {n}")
        self.prev.set_enabled(self.page > 0)
        self.next.set_enabled(first + STEP_PAGE < n)

    def show_page(self, page: int) -> None:
        job = self.state.job
        if job is None or not 0 <= page * STEP_PAGE < max(1, len(job.steps)) or page == self.page:
            return
        self.page = page
        self.steps.clear()
        self.rows.clear()
        self.render(Changed(header=True, steps=tuple(
            s.step_id for s in job.steps if s.index // STEP_PAGE == page)))

    def go_to(self, index: int) -> None:
        """Show a step's row wherever it is: its page first, then scroll to it."""
        self.show_page(index // STEP_PAGE)
        ui.run_javascript(f"document.getElementById('step-{index}')?.scrollIntoView()")

    def render_failures(self, job: pb.Job) -> None:
        """Links to every FAILED step, at the top: no scrolling through a long job to find them."""
        failed = [s for s in job.steps if s.status == pb.STEP_STATUS_FAILED]
        names = [s.name for s in failed]
        if names == getattr(self, "_failed_names", None):
            return
        self._failed_names = names
        self.failure_links.clear()
        with self.failure_links:
            for s in failed:
                link = ui.link(s.name, f"#step-{s.index}").classes("sw-failure")
                link.mark(f"failed-{s.name}").on("click", lambda _, i=s.index: self.go_to(i))
        self.failures.set_visibility(bool(failed))

    def tick(self) -> None:
        """Once a second: running durations grow, and "last heard" ages."""
        self.render_connection()
        for row in self.rows.values():
            if row.step.status == pb.STEP_STATUS_RUNNING:
                row.show_times(row.step)

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
            Connection.CONNECTING: "text-grey-7", Connection.CLOSED: "text-grey-8"}[s.connection])
        self.heard.set_text(last_heard_text(s, time.monotonic()))
        self.error.set_text(s.error)
        for el in (self.steps, self.badge.element):
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
        view = JobView(state, lambda: panel[0])
        with view.panel_slot:
            panel.append(StepPanel(target, job_id))
        with view.actions:
            Actions(target, job_id, view)
        with view.graph_slot:
            graph = GraphPanel(target, job_id, lambda: state.job)
        if step:  # a deep link: /jobs/{id}?step=NAME&child=N
            background_tasks.create(panel[0].open(step, child), name=f"open-{job_id}-{step}")

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
