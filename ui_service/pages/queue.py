"""The queue page: every job's header from WatchJobs, a Run control, cancel, a status filter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nicegui import background_tasks, ui

from stepwatch.client import RETRYABLE, Backoff, Client
from stepwatch.errors import StepwatchError
from stepwatch.v1 import orchestrator_pb2 as pb

from .. import status_style
from ..state import ALL, Connection, QueueState
from .widgets import Badge, ago, clock, date_time, duration

# Whether a cancel button is offered: the server's value, looked up, not derived.
CANCELLABLE = {pb.JOB_STATUS_PENDING, pb.JOB_STATUS_RUNNING}


class JobRow:
    def __init__(self, job: pb.Job, on_cancel: Callable[[str], object]) -> None:
        self.job_id = job.job_id
        with ui.card().classes("w-full q-pa-sm").props(f"data-job-id={job.job_id}") as self.card:
            self.card.mark(f"job-{job.job_id}")
            # Wraps on a narrow screen (the card stacks); columns line up on a wide one.
            with ui.row().classes("w-full items-center gap-x-4 gap-y-1"):
                ui.link(job.definition_name, f"/jobs/{job.job_id}").classes(
                    "text-weight-bold sm:w-48 break-all").mark(f"open-{job.job_id}")
                ui.label(job.job_id[:8]).classes("font-mono text-grey-7 sm:w-20")
                self.badge = Badge(status_style.JOB, job.status)
                self.counts = ui.label("").classes("text-sm")
                self.times = ui.label("").classes("text-xs text-grey-8")
                ui.space()
                self.cancel = ui.button("Cancel", color="negative",
                                        on_click=lambda: on_cancel(job.job_id)).props("flat dense")
                self.cancel.mark(f"cancel-{job.job_id}")
        self.set(job)

    def set(self, job: pb.Job) -> None:
        self.card.props["data-status"] = status_style.value_name(status_style.JOB, job.status)
        self.badge.set(job.status)
        sc = job.step_counts
        self.counts.set_text(
            f"{sc.completed} completed · {sc.failed} failed · {sc.skipped} skipped · "
            f"{sc.cancelled} cancelled · {sc.running} running · {sc.pending} pending")
        self.times.props(f'title="created {ago(job.created_at)}"')
        self.times.set_text(f"created {date_time(job.created_at)} · started {clock(job.started_at)} · "
                            f"finished {clock(job.finished_at)} · "
                            f"{duration(job.started_at, job.finished_at)}")
        self.cancel.set_visibility(job.status in CANCELLABLE)


def register(target: str) -> None:
    @ui.page("/", title="Stepwatch")
    async def queue_page() -> None:
        state = QueueState()
        rows: dict[str, JobRow] = {}

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
            try:
                async with Client(target) as c:
                    await c.cancel(job_id)
            except StepwatchError as err:
                ui.notify(f"cancel failed: {err.message}", type="negative")

        async def run(name: str | None) -> None:
            if not name:
                return
            try:
                async with Client(target) as c:
                    job = await c.submit(name)
                ui.navigate.to(f"/jobs/{job.job_id}")  # Run opens the new job
            except StepwatchError as err:
                ui.notify(f"submit failed: {err.message}", type="negative")

        with ui.row().classes("w-full items-center gap-4"):
            ui.label("Stepwatch").classes("text-h5")
            definitions = ui.select([], label="definition").classes("w-full sm:w-64").mark(
                "definition")
            ui.button("Run", on_click=lambda: run(definitions.value)).mark("run")
            options = {ALL: "all"} | {v.name: status_style.look(status_style.JOB, v.number).label
                                      for v in status_style.JOB.values if v.number}
            ui.select(options, value=ALL, label="status",
                      on_change=lambda e: apply_filter(e.value)).classes("w-full sm:w-56").mark(
                "filter")
            ui.space()
            connection = ui.label(Connection.CONNECTING.value).mark("connection").classes(
                "sw-connection")
        with ui.row().classes("w-full gap-x-4 q-px-sm text-caption text-grey-7 max-sm:hidden"):
            for title, width in (("job", "w-48"), ("id", "w-20"), ("status", "w-40"),
                                 ("steps", "")):
                ui.label(title).classes(width)
        with ui.column().classes("w-full gap-2").mark("jobs") as column:
            pass

        def apply_filter(value: str) -> None:
            state.status_filter = value
            for job_id, row in rows.items():
                row.card.set_visibility(state.shows(job_id))

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
                row.card.set_visibility(state.shows(job_id))
            if added:  # newest first; existing rows only move when a new one arrives
                for index, job_id in enumerate(state.order()):
                    rows[job_id].card.move(column, target_index=index)
            connection.set_text(state.connection.value)

        def on_retry(err: StepwatchError, delay: float) -> None:
            state.connection = Connection.RECONNECTING
            connection.set_text(f"{Connection.RECONNECTING.value} ({err.code.name})")

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
            async for msg in c.watch_jobs(backoff=Backoff(0.3, 5.0), on_retry=on_retry):
                if msg.WhichOneof("kind") == "snapshot":
                    for job_id in [j for j in rows if j not in {x.job_id for x in msg.snapshot.jobs}]:
                        rows.pop(job_id).card.delete()
                render(state.apply(msg))

        task = background_tasks.create(follow(), name="watch-jobs")
        ui.context.client.on_delete(task.cancel)
