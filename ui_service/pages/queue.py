"""The queue page: jobs a page at a time from ListJobs (filtered by the server: name, status,
creation dates), kept live by WatchJobs; Run, and Cancel after a confirmation."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

from nicegui import background_tasks, ui

from stepwatch import status as labels
from stepwatch.client import RETRYABLE, Backoff, Client
from stepwatch.errors import StepwatchError
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.words import step_counts

from .. import access, metrics, status_style
from ..state import Connection, JobQuery, QueueState, day_range
from .run_dialog import ask_inputs
from .widgets import Badge, ago, clock, date_time, duration, user_menu

PAGE = 50


CSS = """
.sw-jobrow { display: grid; align-items: center; column-gap: 10px; height: 32px;
  grid-template-columns: minmax(6rem, 14rem) 5rem 11rem minmax(0, 1fr) 7rem 4.5rem 4.5rem;
  padding: 0 6px; border-bottom: 1px solid rgba(127,127,127,.18); white-space: nowrap;
  font-size: 0.85rem; }
.sw-jobrow > * { overflow: hidden; text-overflow: ellipsis; min-width: 0; }
.sw-jobrow .sw-badge { font-size: 0.72rem; padding: 0 8px; height: 20px; }
.sw-jobrow .sw-dim { font-size: 0.75rem; opacity: .75; }
@media (max-width: 700px) {
  .sw-jobrow { grid-template-columns: minmax(0, 1fr) 9.5rem 4rem; }
  .sw-jobrow .sw-wide { display: none; }
}
"""


class JobRow:
    """One line per job: name, id, status, non-zero step counts, when, how long, cancel."""

    def __init__(self, job: pb.Job, on_cancel: Callable[[str], object]) -> None:
        self.job_id = job.job_id
        self.may_cancel = access.can_act()
        with ui.element("div").classes("w-full sw-jobrow").props(
                f"data-job-id={job.job_id}") as self.card:
            self.card.mark(f"job-{job.job_id}")
            ui.link(job.definition_name, f"/jobs/{job.job_id}").classes(
                "text-weight-bold").mark(f"open-{job.job_id}")
            ui.label(job.job_id[:8]).classes("font-mono sw-dim sw-wide")
            self.badge = Badge(status_style.JOB, job.status)
            self.counts = ui.label("").classes("sw-dim sw-wide")
            self.times = ui.label("").classes("sw-dim sw-wide")
            self.took = ui.label("").classes("sw-dim")
            self.cancel = ui.button("Cancel", color="negative",
                                    on_click=lambda: on_cancel(job.job_id)).props("flat dense")
            self.cancel.mark(f"cancel-{job.job_id}").classes("sw-cancel")
        self.set(job)

    def set(self, job: pb.Job) -> None:
        self.card.props["data-status"] = status_style.value_name(status_style.JOB, job.status)
        self.badge.set(job.status)
        sc = job.step_counts
        self.counts.set_text(step_counts(
            [(sc.completed, "completed"), (sc.failed, "failed"), (sc.skipped, "skipped"),
             (sc.cancelled, "cancelled"), (sc.running, "running"), (sc.pending, "pending")],
            sc.total))
        self.times.props["title"] = (f"created {date_time(job.created_at)} · started "
                                     f"{clock(job.started_at)} · finished {clock(job.finished_at)}")
        self.times.set_text(ago(job.created_at))
        self.took.set_text(duration(job.started_at, job.finished_at))
        # The server's status, looked up (not derived); and only for an operator.
        self.cancel.set_visibility(self.may_cancel and job.status in labels.CANCELLABLE_JOB)


def register(target: str) -> None:
    @ui.page("/", title="Stepwatch")
    async def queue_page() -> None:
        state = QueueState()
        rows: dict[str, JobRow] = {}
        loads = [0]  # a generation: an answer to an older query is dropped

        def cancel(job_id: str) -> None:
            """Ask first: a cancel stops running commands and cannot be undone."""
            with ui.dialog() as dialog, ui.card():
                ui.label(f"Cancel job {job_id[:8]}? Its running commands are stopped; its "
                         "pending steps will not run.")
                with ui.row():
                    ui.button("Keep it running", on_click=dialog.close).props("flat")
                    ui.button("Cancel the job", color="negative",
                              on_click=lambda: confirmed(dialog, job_id)).mark("confirm-cancel")
            dialog.open()

        async def confirmed(dialog: ui.dialog, job_id: str) -> None:
            dialog.close()
            if not access.can_act():
                ui.notify("cancelling needs the operator role", type="negative")
                return
            try:
                async with Client(target) as c:
                    await c.cancel(job_id)
            except StepwatchError as err:
                ui.notify(f"cancel failed: {err.message}", type="negative")

        infos: dict[str, pb.JobDefinitionInfo] = {}

        async def submit(name: str, inputs: dict[str, object]) -> None:
            async with Client(target) as c:
                job = await c.submit(name, inputs=inputs)  # type: ignore[arg-type]
            ui.navigate.to(f"/jobs/{job.job_id}")  # Run opens the new job

        async def run(name: str | None) -> None:
            if not name or not access.can_act():
                return
            info = infos.get(name)
            if info is not None and info.inputs:  # a form from its declared inputs first
                ask_inputs(info, lambda values: submit(name, values))
                return
            try:
                await submit(name, {})
            except StepwatchError as err:
                ui.notify(f"submit failed: {err.message}", type="negative")

        with ui.row().classes("w-full items-center gap-4"):
            ui.label("Stepwatch").classes("text-h5")
            definitions = ui.select([], label="definition").classes("w-full sm:w-64").mark(
                "definition")
            run_button = ui.button("Run", on_click=lambda: run(definitions.value)).mark("run").classes(
                "sw-run")
            run_button.set_enabled(False)  # until the orchestrator answered
            for el in (definitions, run_button):
                el.set_visibility(access.can_act())  # a viewer runs nothing
            ui.space()
            ui.link("Schedules", "/schedules").mark("nav-schedules")
            ui.link("Webhooks", "/webhooks").mark("nav-webhooks")
            user_menu()
            connection = ui.label(Connection.CONNECTING.value).mark("connection").classes(
                "sw-connection")
        with ui.row().classes("w-full items-center gap-x-4 gap-y-1"):
            search = ui.input("name starts with", on_change=lambda: query_changed()).props(
                "dense clearable debounce=300").classes("w-full sm:w-56 sw-search").mark("search")
            options = {0: "all"} | {v.number: status_style.look(status_style.JOB, v.number).label
                                    for v in status_style.JOB.values if v.number}
            status = ui.select(options, value=0, label="status",
                               on_change=lambda: query_changed()).classes("w-full sm:w-56").mark(
                "filter")
            since = ui.input("created from").props("dense type=date stack-label clearable").classes(
                "w-full sm:w-40").mark("created-from")
            until = ui.input("created to").props("dense type=date stack-label clearable").classes(
                "w-full sm:w-40").mark("created-to")
            for date in (since, until):
                date.on_value_change(lambda: query_changed())
            ui.space()
            prev = ui.button("‹ newer", on_click=lambda: turn(-1)).props("flat dense no-caps").classes(
                "sw-newer").mark("newer")
            page_label = ui.label("").classes("text-sm sw-page").mark("page")
            nxt = ui.button("older ›", on_click=lambda: turn(1)).props("flat dense no-caps").classes(
                "sw-older").mark("older")
        with ui.element("div").classes("w-full sw-jobrow text-caption text-grey-7"):
            for title in ("job", "id", "status", "steps", "created", "took", ""):
                ui.label(title).classes("" if title in ("job", "status", "took") else "sw-wide")
        with ui.column().classes("w-full gap-0").mark("jobs") as column:
            pass
        empty = ui.label("No jobs match.").classes("text-grey-7").mark("no-jobs")
        empty.set_visibility(False)

        async def query_changed() -> None:
            after, before = day_range(since.value or "", until.value or "",
                                      dt.datetime.now().astimezone().tzinfo or dt.UTC)
            state.query = JobQuery(status=int(status.value or 0), name_prefix=search.value or "",
                                   created_after=after, created_before=before)
            state.tokens = [""]
            await load()

        async def turn(delta: int) -> None:
            if delta > 0 and state.next_token:
                state.tokens.append(state.next_token)
            elif delta < 0 and len(state.tokens) > 1:
                state.tokens.pop()
            else:
                return
            await load()

        async def load() -> None:
            """Read the page the state points at from ListJobs; the server filters and pages."""
            loads[0] += 1
            mine, q = loads[0], state.query
            try:
                async with Client(target) as c:
                    jobs, token = await c.list_jobs(
                        PAGE, state.tokens[-1], q.status, q.name_prefix, q.created_after,
                        q.created_before)
            except StepwatchError as err:
                page_label.set_text(f"cannot list jobs: {err.message}")
                return
            if mine != loads[0]:
                return  # a newer query was asked meanwhile
            state.show(jobs, token)
            for job_id in [j for j in rows if j not in state.jobs]:
                rows.pop(job_id).card.delete()
            render(list(state.jobs))

        def render(changed: list[str]) -> None:
            added = False
            for job_id in changed:
                job = state.jobs[job_id]
                row = rows.get(job_id)
                if row is None:
                    with column:
                        row = rows[job_id] = JobRow(job, cancel)
                    added = True
                else:
                    row.set(job)
            if added:  # newest first; existing rows only move when a new one arrives
                for index, job_id in enumerate(state.order()):
                    rows[job_id].card.move(column, target_index=index)
            first = (state.page - 1) * PAGE
            page_label.set_text(f"page {state.page} · jobs {first + 1}–{first + len(state.jobs)}"
                                if state.jobs else f"page {state.page}")
            prev.set_enabled(state.page > 1)
            nxt.set_enabled(bool(state.next_token))
            empty.set_visibility(not state.jobs)
            reachable(True)

        def reachable(yes: bool, why: str = "") -> None:
            """Run is offered only while the orchestrator answers; the label says where it
            is when it does not."""
            run_button.set_enabled(yes)
            if yes:
                connection.set_text(state.connection.value)
                connection.props["data-connection"] = state.connection.name
            else:
                connection.set_text(f"orchestrator unreachable at {target} ({why}); retrying")
                connection.props["data-connection"] = Connection.RECONNECTING.name

        def on_retry(err: StepwatchError, delay: float) -> None:
            metrics.RECONNECTS.labels("WatchJobs").inc()
            state.connection = Connection.RECONNECTING
            reachable(False, err.code.name)

        async def load_definitions(c: Client) -> None:
            """Until the orchestrator answers: it may be down when the page opens (make run)."""
            backoff, tries = Backoff(0.3, 5.0), 0
            while True:
                try:
                    defs = await c.definitions()
                except StepwatchError as err:
                    if err.code not in RETRYABLE:
                        connection.set_text(f"cannot list definitions: {err.message}")
                        return
                    tries += 1
                    await asyncio.sleep(backoff.delay(tries))  # backoff before the next try
                    continue
                infos.update({d.name: d for d in defs})
                definitions.set_options([d.name for d in defs])
                definitions.props(f"data-definitions={len(defs)}")
                return

        async def follow() -> None:
            # No ui.notify here: a background task has no slot to show it in.
            async with Client(target) as c:
                loader = asyncio.create_task(load_definitions(c))
                try:
                    await feed(c)
                finally:
                    loader.cancel()

        async def feed(c: Client) -> None:
            async for msg in c.watch_jobs(limit=1, backoff=Backoff(0.3, 5.0), on_retry=on_retry):
                changed, reread = state.apply(msg)
                if reread:  # (re)connected: read the page, changes may have been missed
                    await load()
                else:
                    render(changed)

        task = background_tasks.create(follow(), name="watch-jobs")
        metrics.PAGES_OPEN.labels("queue").inc()
        ui.context.client.on_delete(task.cancel)
        # A handler of no arguments: NiceGUI passes the client to one that takes any, and
        # Gauge.dec would take it for the amount.
        ui.context.client.on_delete(lambda: metrics.PAGES_OPEN.labels("queue").dec())
