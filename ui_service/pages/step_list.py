"""The job page's step list: one line per step, as GitHub Actions lists a run's jobs.

A row is badge, name, type, why it did not complete, children counts (zeros left out) and a
human duration; every value is the server's. Rows are updated in place. A step that never
ran (attempt 0) has nothing to open; the others open the step panel. "Failed only" and
"hide completed" are CSS classes on the list: the rows stay, the browser hides them.
"""

from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

from stepwatch import status as labels
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.words import child_counts

from .. import status_style
from .widgets import Badge, duration

STEP_PAGE = 100  # step rows on screen at once: a 2,000-step job draws as fast as a small one

CSS = """
.sw-steps { max-height: calc(100vh - 100px); overflow-y: auto; }
.sw-step { display: grid; align-items: center; column-gap: 8px; height: 24px;
  grid-template-columns: 7.5rem minmax(5rem, 12rem) minmax(0, 1fr) auto 4.5rem;
  padding: 0 6px; border-bottom: 1px solid rgba(127,127,127,.18); white-space: nowrap;
  font-size: 0.85rem; cursor: pointer; }
.sw-step:hover { background: rgba(127,127,127,.10); }
.sw-step.sw-idle { cursor: default; }
.sw-step.sw-selected { background: rgba(25,118,210,.14); }
.sw-step > * { overflow: hidden; text-overflow: ellipsis; min-width: 0; }
.sw-step .sw-badge { font-size: 0.72rem; padding: 0 8px; height: 18px; }
.sw-step .sw-badge .q-icon { font-size: 0.9rem; }
.sw-step-name { font-weight: 600; }
.sw-step-type, .sw-step-counts, .sw-duration { font-size: 0.75rem; opacity: .75; }
.sw-duration { text-align: right; }
.sw-step-why { font-size: 0.75rem; }
.sw-only-failed .sw-step:not([data-status=STEP_STATUS_FAILED]) { display: none; }
.sw-hide-completed .sw-step[data-status=STEP_STATUS_COMPLETED] { display: none; }
@media (max-width: 700px) {
  .sw-step { grid-template-columns: 6.5rem minmax(0, 1fr) auto 3.8rem; }
  .sw-step .sw-step-why, .sw-step .sw-step-type { display: none; }
}
"""


class StepRow:
    def __init__(self, step: pb.Step, on_select: Callable[[str], None]) -> None:
        self.on_select = on_select
        with ui.element("div").classes("sw-step").props(
                f"data-step-id={step.step_id} id=step-{step.index}") as self.row:
            self.row.mark(f"step-{step.name}")
            self.badge = Badge(status_style.STEP, step.status)
            with ui.element("div").classes("sw-step-title"):
                ui.label(step.name).classes("sw-step-name inline")
                ui.label(f" {step.type}").classes("sw-step-type inline")
            self.why = ui.label("").classes("sw-step-why")
            self.counts = ui.label("").classes("sw-step-counts")
            self.duration = ui.label("").classes("sw-duration")
        self.row.on("click", lambda: self.on_select(self.step.name) if self.step.attempt else None)
        self.set(step)

    def show_times(self, step: pb.Step) -> None:
        self.duration.set_text(duration(step.started_at, step.finished_at)
                                if step.started_at.ByteSize() else "")

    def set(self, step: pb.Step) -> None:
        self.step = step
        self.row.props["data-status"] = status_style.value_name(status_style.STEP, step.status)
        self.badge.set(step.status)
        c = step.children
        counts = child_counts(c.completed, c.failed, c.running, c.total)
        if step.max_attempts > 1 and step.attempt > 1:
            counts = f"attempt {step.attempt}/{step.max_attempts}" + (f" · {counts}" if counts else "")
        self.counts.set_text(counts)
        why = labels.failure_text(step.failure) if step.HasField("failure") else ""
        if step.HasField("previous_attempt_failure"):
            why = "retrying after: " + labels.failure_text(step.previous_attempt_failure)
        self.why.set_text(why + (" (tolerated)" if step.tolerated else ""))
        self.why.props["title"] = why
        alarm = step.status == pb.STEP_STATUS_FAILED
        self.why.classes(replace="sw-step-why " + ("sw-failure" if alarm else "sw-note"))
        if step.attempt:
            self.row.classes(remove="sw-idle")
        else:
            self.row.classes(add="sw-idle")
        self.show_times(step)

    def selected(self, yes: bool) -> None:
        if yes:
            self.row.classes(add="sw-selected")
        else:
            self.row.classes(remove="sw-selected")


class StepList:
    """The rows of one page of steps, with the filters and the pager."""

    def __init__(self, on_select: Callable[[str], None], toolbar: ui.element) -> None:
        """``toolbar``: where the filters and the pager go (the page's summary line)."""
        self.on_select = on_select
        self.client = ui.context.client  # selections come from background tasks too
        self.rows: dict[str, StepRow] = {}
        self.page = 0
        self.selected = ""
        with toolbar:
            self.only_failed = ui.switch("failed only", on_change=self._filters).props(
                "dense").mark("only-failed")
            self.hide_done = ui.switch("hide completed", on_change=self._filters).props(
                "dense").mark("hide-completed")
            ui.space()
            with ui.row().classes("items-center gap-1 sw-pager").mark("step-pager") as self.pager:
                self.prev = ui.button("‹", on_click=lambda: self.show_page(self.page - 1)).props(
                    "flat dense").mark("steps-prev")
                self.page_label = ui.label("").classes("text-xs").mark("steps-page")
                self.next = ui.button("›", on_click=lambda: self.show_page(self.page + 1)).props(
                    "flat dense").mark("steps-next")
        self.pager.set_visibility(False)
        with ui.element("div").classes("w-full sw-steps").mark("steps") as self.box:
            pass
        self.job: pb.Job | None = None

    def _filters(self) -> None:
        for value, css in ((self.only_failed.value, "sw-only-failed"),
                           (self.hide_done.value, "sw-hide-completed")):
            if value:
                self.box.classes(add=css)
            else:
                self.box.classes(remove=css)

    def update(self, job: pb.Job, step_ids: tuple[str, ...], by_id: Callable[[str], pb.Step | None],
               header: bool) -> None:
        self.job = job
        if header:
            self._pager(job)
        for step_id in step_ids:
            step = by_id(step_id)
            if step is None or step.index // STEP_PAGE != self.page:
                continue  # off this page: drawn when its page is shown
            row = self.rows.get(step_id)
            if row is None:
                with self.box:
                    row = self.rows[step_id] = StepRow(step, self.on_select)
                row.selected(step.name == self.selected)
            else:
                row.set(step)

    def _pager(self, job: pb.Job) -> None:
        n = len(job.steps)
        self.pager.set_visibility(n > STEP_PAGE)
        first = self.page * STEP_PAGE
        self.page_label.set_text(f"steps {first + 1}–{min(n, first + STEP_PAGE)} of {n}")
        self.prev.set_enabled(self.page > 0)
        self.next.set_enabled(first + STEP_PAGE < n)

    def show_page(self, page: int) -> None:
        job = self.job
        if job is None or not 0 <= page * STEP_PAGE < max(1, len(job.steps)) or page == self.page:
            return
        self.page = page
        self.box.clear()
        self.rows.clear()
        by_id = {s.step_id: s for s in job.steps}
        self.update(job, tuple(s.step_id for s in job.steps if s.index // STEP_PAGE == page),
                    by_id.get, header=True)

    def select(self, name: str) -> None:
        """Mark the selected step's row, showing its page first."""
        self.selected = name
        step = next((s for s in self.job.steps if s.name == name), None) if self.job else None
        if step is not None:
            self.show_page(step.index // STEP_PAGE)
        for row in self.rows.values():
            row.selected(row.step.name == name)
        if step is not None:
            self.client.run_javascript(f"document.getElementById('step-{step.index}')"
                              "?.scrollIntoView({block: 'nearest'})")

    def tick(self) -> None:
        for row in self.rows.values():
            if row.step.status == pb.STEP_STATUS_RUNNING:
                row.show_times(row.step)
