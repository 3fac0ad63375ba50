"""The step panel: a step's children (paged, failed first, filtered) and its live log.

Children come a page at a time from ListChildren (the server pages; the tab holds
one page, whatever the number of children); the log follows WatchLogs into a
bounded window. Statuses are the server's, drawn from the one status table.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from nicegui import background_tasks, ui

from stepwatch import status as labels
from stepwatch.client import Backoff, Client
from stepwatch.errors import StepwatchError
from stepwatch.v1 import orchestrator_pb2 as pb

from .. import status_style
from .widgets import Badge, date_time, duration

PAGE = 50
LOG_LINES = 20_000  # the window of the log kept in the tab; the whole log stays on the server
LINES_PER_BLOCK = 500  # lines go to the page in blocks: one DOM element per block, not per line
FLUSH_S = 0.25  # the log view is redrawn at most this often, however fast the log grows
FILTERS = {0: "all children", pb.CHILD_STATUS_FAILED: "failed", pb.CHILD_STATUS_RUNNING: "running",
           pb.CHILD_STATUS_COMPLETED: "completed", pb.CHILD_STATUS_CANCELLED: "cancelled",
           pb.CHILD_STATUS_PENDING: "pending"}
STREAM_CLASS: dict[int, str] = {pb.LOG_STREAM_STDERR: "text-red-8", pb.LOG_STREAM_SYSTEM: "text-grey-7"}
BADGE_CELL = """<q-td :props="props"><span class="sw-badge" :data-status="props.row.status_name"
 :style="{'background-color': props.row.colour}">{{ props.row.status_label }}</span></q-td>"""


class StepPanel:
    """``on_change(step, child)``: the selection changed (the page puts it in the URL)."""

    def __init__(self, target: str, job_id: str,
                 on_change: Callable[[str, int | None], None] = lambda s, c: None) -> None:
        self.target = target
        self.job_id = job_id
        self.on_change = on_change
        self.step = ""
        self.child: int | None = None
        self.status = 0
        self.tokens = [""]  # the token of each page seen, to go back
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.pending: list[tuple[str, int]] = []  # (line, stream) not drawn yet
        self.log_task: asyncio.Task[None] | None = None
        with ui.card().classes("w-full q-pa-sm").mark("step-panel") as self.card:
            with ui.row().classes("w-full items-center gap-2"):
                self.badge = Badge(status_style.STEP, 0)
                self.title = ui.label("").classes("text-subtitle1 text-weight-bold")
                self.when = ui.label("").classes("text-xs sw-note").mark("step-when")
                ui.space()
                ui.button("close", on_click=self.close).props("flat dense")
            self.failure = ui.label("").classes("text-sm sw-failure").mark("step-failure")
            self.tolerated = ui.label("tolerated — the job went on").classes(
                "text-xs sw-note").mark("step-tolerated")
            self.retry = ui.label("").classes("text-xs text-orange-10")
            with ui.row().classes("w-full items-center gap-2"):
                ui.label("children").classes("text-subtitle2")
                ui.select(FILTERS, value=0, on_change=lambda e: self.filter(e.value)).classes(
                    "w-40").mark("child-filter")
                self.prev = ui.button("‹", on_click=self.previous_page).props("flat dense")
                self.page_label = ui.label("").classes("text-xs")
                self.next = ui.button("›", on_click=self.next_page).props("flat dense")
            self.table = ui.table(rows=[], columns=[
                {"name": "index", "label": "#", "field": "index", "align": "left"},
                {"name": "status", "label": "status", "field": "status_label", "align": "left"},
                {"name": "key", "label": "child", "field": "key", "align": "left",
                 "classes": "ellipsis", "style": "max-width: 28rem"},
                {"name": "detail", "label": "error / result", "field": "detail", "align": "left",
                 "classes": "ellipsis", "style": "max-width: 28rem"},
                {"name": "duration", "label": "duration", "field": "duration", "align": "left"},
            ], row_key="index").props("dense flat virtual-scroll").classes("w-full").style(
                "max-height: 24rem").mark("children")
            self.table.add_slot("body-cell-status", BADGE_CELL)
            self.table.on("rowClick", lambda e: self.open(self.step, int(e.args[1]["index"])))
            with ui.row().classes("w-full items-center gap-2"):
                self.log_title = ui.label("").classes("text-subtitle2").mark("log-title")
                self.whole = ui.button("whole step log", on_click=lambda: self.open(
                    self.step, None, first_failed=False)).props("flat dense no-caps").mark(
                    "whole-log")
                ui.space()
                ui.button("copy", icon="content_copy", on_click=self.copy).props("flat dense")
            # ui.log's own push makes one element per line; blocks go in through _append.
            self.log = ui.log().classes("w-full h-80 text-xs font-mono").mark("log")
        self.card.set_visibility(False)
        ui.timer(FLUSH_S, self._flush_log)

    async def open(self, step: str, child: int | None = None, *, first_failed: bool = False) -> None:
        """Show a step's children (failed first) and follow its log, or one child's; with
        ``first_failed`` and no child named, the first failed child's log (the failure's
        lines, without a click)."""
        if step != self.step:
            self.step, self.tokens, self.status = step, [""], 0
            await self.load_page()
        if child is None and first_failed and self.table.rows and self.table.rows[0][
                "status_name"] == "CHILD_STATUS_FAILED":
            child = int(str(self.table.rows[0]["index"]))
        self.child = child
        self.card.set_visibility(True)
        self.title.set_text(step)
        self.log_title.set_text(f"log of {step}" + (
            f", child {child}" + (" (failed)" if first_failed else "") if child is not None else ""))
        self.whole.set_visibility(child is not None)
        self.follow_log()
        self.on_change(step, child)

    def describe(self, step: pb.Step) -> None:
        """The open step as the server last sent it: status, why, attempt, when."""
        if step.name != self.step:
            return
        self.badge.set(step.status)
        why = labels.failure_text(step.failure) if step.HasField("failure") else ""
        self.failure.set_text(why)
        self.failure.set_visibility(bool(why))
        alarm = step.status == pb.STEP_STATUS_FAILED
        self.failure.classes(replace="text-sm " + ("sw-failure" if alarm else "sw-note"))
        self.tolerated.set_visibility(step.tolerated)
        retry = step.HasField("previous_attempt_failure")
        self.retry.set_visibility(retry)
        if retry:
            self.retry.set_text("retrying after: "
                                + labels.failure_text(step.previous_attempt_failure))
        attempt = f"attempt {step.attempt} of {step.max_attempts} · " if step.max_attempts > 1 else ""
        self.when.set_text(f"{step.type} · {attempt}"
                           f"{duration(step.started_at, step.finished_at)}")
        self.when.props["title"] = f"started {date_time(step.started_at)}"

    def close(self) -> None:
        self.card.set_visibility(False)
        self.step = ""
        if self.log_task is not None:
            self.log_task.cancel()
        self.on_change("", None)

    async def filter(self, status: int) -> None:
        self.status, self.tokens = status, [""]
        await self.load_page()

    async def next_page(self) -> None:
        if self.next_token:
            self.tokens.append(self.next_token)
            await self.load_page()

    async def previous_page(self) -> None:
        if len(self.tokens) > 1:
            self.tokens.pop()
            await self.load_page()

    async def load_page(self) -> None:
        try:
            async with Client(self.target) as c:
                page = await c.list_children(self.job_id, self.step, status=self.status,
                                             failed_first=True, page_size=PAGE,
                                             page_token=self.tokens[-1])
        except StepwatchError as err:
            self.page_label.set_text(f"{err.code.name}: {err.message}")
            return
        self.next_token = page.next_page_token
        self.table.rows = [_row(ch) for ch in page.children]
        self.table.update()
        # A step without children (an init that failed, filter_tags) shows no empty table.
        self.table.set_visibility(bool(page.children) or self.status != 0 or len(self.tokens) > 1)
        self.page_label.set_text(f"attempt {page.attempt} · page {len(self.tokens)}")
        self.prev.set_enabled(len(self.tokens) > 1)
        self.next.set_enabled(bool(page.next_page_token))

    def follow_log(self) -> None:
        if self.log_task is not None:
            self.log_task.cancel()
        self.log.clear()
        self.lines.clear()
        self.pending.clear()
        self.log_task = background_tasks.create(self._follow(self.step, self.child),
                                                name=f"log-{self.job_id}-{self.step}")

    async def _follow(self, step: str, child: int | None) -> None:
        try:
            async with Client(self.target) as c:
                async for msg in c.watch_logs(self.job_id, step, child_index=child,
                                              backoff=Backoff(0.3, 5.0)):
                    if msg.WhichOneof("kind") != "chunk":
                        continue
                    chunk = msg.chunk
                    who = (f"[{chunk.child_index}] " if chunk.HasField("child_index")
                           and child is None else "")
                    lines = [who + line for line in chunk.text.splitlines()]
                    self.lines.extend(lines)
                    self.pending.extend((line, chunk.stream) for line in lines)
                    await asyncio.sleep(0)  # a fast log must not starve the page's other work
        except StepwatchError as err:
            self._append(f"[{err.code.name}] {err.message}", "text-grey-7")

    def _flush_log(self) -> None:
        """Draw what came since the last flush: at most the window's worth, in a few blocks."""
        if not self.pending:
            return
        shown = self.pending[-LOG_LINES:]
        hidden = len(self.pending) - len(shown)
        self.pending = []
        if hidden:
            self._append(f"… {hidden} earlier lines not shown here (all of them: copy, or "
                         "`stepwatch logs`)", "text-grey-7")
        block: list[str] = []
        stream = shown[0][1]
        for line, s in [*shown, ("", -1)]:
            if (s != stream or len(block) == LINES_PER_BLOCK) and block:
                self._append("\n".join(block), STREAM_CLASS.get(stream, ""))
                block = []
            stream = s
            block.append(line)

    def _append(self, text: str, classes: str) -> None:
        """One element for a whole block of lines; the oldest blocks go past the window."""
        with self.log:
            ui.label(text).classes(replace=classes).style("white-space: pre-wrap")
        children = self.log.default_slot.children
        while len(children) > LOG_LINES // LINES_PER_BLOCK + 1:
            self.log.remove(children[0])

    def copy(self) -> None:
        ui.clipboard.write("\n".join(self.lines))
        ui.notify(f"copied {len(self.lines)} lines")

    next_token: str = ""


def _row(ch: pb.Child) -> dict[str, object]:
    look = status_style.look(status_style.CHILD, ch.status)
    return {"index": ch.index, "key": ch.key, "status_label": look.label, "colour": look.colour,
            "status_name": status_style.value_name(status_style.CHILD, ch.status),
            "detail": ch.error.message if ch.HasField("error") else ch.result,
            "duration": duration(ch.started_at, ch.finished_at)}
