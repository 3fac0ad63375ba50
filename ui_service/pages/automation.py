"""The schedules page (next run, last job with its status badge, pause/resume, run now)
and the webhooks page (subscriptions and the delivery log), read from the orchestrator
every few seconds and updated in place. Changing them is an admin's; the orchestrator
checks again."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from nicegui import ui

from stepwatch.client import Client
from stepwatch.errors import StepwatchError
from stepwatch.status import Tone
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.words import ahead

from .. import access, status_style
from .widgets import Badge, ago, date_time, user_menu

__all__ = ["CSS", "register"]

REFRESH_S = 2.0  # schedules have no stream: the page reads them again this often

CSS = """
.sw-schedrow, .sw-delivrow { display: grid; align-items: center; column-gap: 10px;
  min-height: 32px; padding: 0 6px; border-bottom: 1px solid rgba(127,127,127,.18);
  font-size: 0.85rem; }
.sw-schedrow { grid-template-columns: minmax(6rem, 12rem) minmax(8rem, 14rem) 14rem
  minmax(9rem, 1fr) 9rem 4rem 11rem; }
.sw-delivrow { grid-template-columns: 6rem 7rem 7rem minmax(6rem, 10rem) 6rem 4rem 4rem
  minmax(0, 1fr) 10rem; }
.sw-schedrow > *, .sw-delivrow > * { overflow: hidden; text-overflow: ellipsis; min-width: 0;
  white-space: nowrap; }
.sw-schedrow .sw-badge { font-size: 0.72rem; padding: 0 8px; height: 20px; }
/* A phone: each row becomes a two-column card (every field kept), without the header. */
@media (max-width: 760px) {
  .sw-schedrow, .sw-delivrow { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr);
    row-gap: 2px; padding: 6px; }
  .sw-head { display: none; }
  .sw-schedrow > [data-label]::before, .sw-delivrow > [data-label]::before {
    content: attr(data-label) " "; opacity: .6; }
  .sw-delivrow .sw-badge { justify-self: start; }
}
"""
OVERLAP = {pb.OVERLAP_POLICY_SKIP: "skip", pb.OVERLAP_POLICY_ALLOW: "allow",
           pb.OVERLAP_POLICY_CANCEL_PREVIOUS: "cancel previous"}
CATCHUP = {pb.CATCHUP_POLICY_NONE: "none", pb.CATCHUP_POLICY_LATEST: "latest",
           pb.CATCHUP_POLICY_ALL: "all"}
EVENT = {pb.NOTIFY_EVENT_JOB_FINISHED: "job finished", pb.NOTIFY_EVENT_STEP_FAILED: "step failed"}
# A delivery's state, in the tones of the one status table (status_style).
DELIVERY = {pb.DELIVERY_STATE_PENDING: ("pending", Tone.WAITING),
            pb.DELIVERY_STATE_DELIVERED: ("delivered", Tone.SUCCESS),
            pb.DELIVERY_STATE_FAILED: ("failed", Tone.FAILURE)}


def when(ts: object) -> str:
    """A coming or past time: "2026-12-03 09:00:00 (in 5 min)"."""
    assert isinstance(ts, type(pb.Schedule().next_run_time))
    if not ts.ByteSize():
        return "–"
    at, now = ts.ToDatetime(dt.UTC), dt.datetime.now(dt.UTC)
    return f"{date_time(ts)} ({ahead(at, now) if at > now else ago(ts)})"


def header(title: str) -> None:
    with ui.row().classes("w-full items-center gap-4"):
        ui.link("Stepwatch", "/").classes("text-h5 no-underline")
        ui.label(title).classes("text-h6")
        ui.link("Schedules", "/schedules").mark("nav-schedules")
        ui.link("Webhooks", "/webhooks").mark("nav-webhooks")
        ui.space()
        user_menu()


class ScheduleRow:
    def __init__(self, s: pb.Schedule, act: Callable[[str, str], Awaitable[None]]) -> None:
        self.schedule_id = s.schedule_id
        self.paused: bool = s.paused
        admin = access.can_admin()
        with ui.element("div").classes("w-full sw-schedrow").props(
                f"data-schedule-id={s.schedule_id}") as self.row:
            self.row.mark(f"schedule-{s.schedule_id}")
            name = ui.label(s.definition_name).classes("text-weight-bold")
            name.props["title"] = s.description
            ui.label(f"{s.cron} ({s.time_zone})").classes("font-mono text-xs")
            self.next = ui.label("").mark(f"next-{s.schedule_id}")
            with ui.row().classes("items-center gap-2 no-wrap"):
                self.last = ui.link("", "#").classes("font-mono text-xs")
                self.badge = Badge(status_style.JOB, 0)
            self.policy = ui.label("").classes("text-xs")
            self.skipped = ui.label("").classes("text-xs").props(
                "title='runs skipped' data-label='skipped'")
            with ui.row().classes("gap-1 no-wrap"):
                self.toggle = ui.button("Pause", on_click=lambda: act(
                    self.schedule_id, "resume" if self.paused else "pause")).props(
                    "flat dense no-caps").mark(f"toggle-{s.schedule_id}")
                self.run = ui.button("Run now", on_click=lambda: act(self.schedule_id, "trigger")
                                     ).props("flat dense no-caps").mark(f"trigger-{s.schedule_id}")
            for b in (self.toggle, self.run):
                b.set_visibility(admin)
        self.error = ui.label("").classes("sw-failure text-xs w-full").mark(
            f"error-{s.schedule_id}")
        self.set(s)

    def set(self, s: pb.Schedule) -> None:
        self.paused = s.paused
        self.row.props["data-paused"] = "true" if s.paused else "false"
        self.next.set_text("paused" if s.paused else when(s.next_run_time))
        self.toggle.set_text("Resume" if s.paused else "Pause")
        self.last.set_text(s.last_job_id[:8] if s.last_job_id else "no job yet")
        self.last.props["href"] = f"/jobs/{s.last_job_id}" if s.last_job_id else "#"
        self.badge.set(s.last_job_status)  # the server's status of that job, as sent
        self.badge.element.set_visibility(bool(s.last_job_id))
        self.policy.set_text(f"overlap {OVERLAP.get(s.overlap, s.overlap)}, catch-up "
                             f"{CATCHUP.get(s.catchup, s.catchup)}")
        self.skipped.set_text(str(s.skipped))
        self.error.set_text(s.last_error)
        self.error.set_visibility(bool(s.last_error))

    def delete(self) -> None:
        self.row.delete()
        self.error.delete()


def subscription_line(s: pb.Subscription) -> None:
    events = ", ".join(EVENT.get(e, str(e)) for e in s.events)
    only = ", ".join(status_style.look(status_style.JOB, x).label for x in s.job_statuses)
    ui.label(f"{s.url} · {events}" + (f" ({only})" if only else "")
             + (f" · {s.definition_name} only" if s.definition_name else "")
             ).classes("text-sm").mark(f"subscription-{s.subscription_id}")


class DeliveryRow:
    """One delivery: what, for which job, where it stands (the server's state, as sent)."""

    def __init__(self, d: pb.Delivery, url: str) -> None:
        with ui.element("div").classes("w-full sw-delivrow") as self.row:
            self.row.props["data-delivery-id"] = d.delivery_id
            ui.label(d.delivery_id[:8]).classes("font-mono text-xs")
            ui.label(EVENT.get(d.event, str(d.event)))
            ui.link(d.job_id[:8], f"/jobs/{d.job_id}").classes("font-mono text-xs")
            ui.label(d.step or url)
            self.state = ui.label("").classes("sw-badge")
            self.tries = ui.label("").props("data-label=tries")
            self.code = ui.label("").props("data-label=HTTP")
            self.error = ui.label("").classes("sw-failure text-xs")
            self.next = ui.label("").props("data-label='next try'")
        self.set(d)

    def set(self, d: pb.Delivery) -> None:
        word, tone = DELIVERY.get(d.state, (f"unknown ({d.state})", Tone.UNKNOWN))
        self.row.props["data-state"] = word
        self.state.set_text(word)
        self.state.style["background-color"] = status_style.TONE_LOOK[tone][0]
        self.tries.set_text(str(d.attempts))
        self.code.set_text(str(d.last_status_code or "–"))
        self.error.set_text(d.last_error)
        self.error.props["title"] = d.last_error
        self.next.set_text(when(d.next_attempt_time) if d.HasField("next_attempt_time") else "–")


def register(target: str) -> None:
    @ui.page("/schedules", title="Stepwatch schedules")
    async def schedules_page() -> None:
        rows: dict[str, ScheduleRow] = {}
        header("Schedules")
        status = ui.label("").classes("text-sm text-grey-7").mark("schedules-status")
        with ui.element("div").classes("w-full sw-schedrow sw-head text-caption text-grey-7"):
            for title in ("definition", "cron (zone)", "next run", "last job", "policy",
                          "skipped", ""):
                ui.label(title)
        column = ui.column().classes("w-full gap-0").mark("schedules")
        empty = ui.label("No schedules yet: `stepwatch schedules create NAME --cron ...`").classes(
            "text-grey-7").mark("no-schedules")

        async def act(schedule_id: str, what: str) -> None:
            if not access.can_admin():
                ui.notify("changing schedules needs the admin role", type="negative")
                return
            try:
                async with Client(target) as c:
                    if what == "trigger":
                        job = await c.trigger_schedule(schedule_id)
                        ui.navigate.to(f"/jobs/{job.job_id}")
                        return
                    await c.pause_schedule(schedule_id, paused=what == "pause")
            except StepwatchError as err:
                ui.notify(f"{what} failed: {err.message}", type="negative")
            await refresh()

        async def refresh() -> None:
            try:
                async with Client(target) as c:
                    found = await c.list_schedules()
            except StepwatchError as err:
                status.set_text(f"cannot list schedules: {err.message}; retrying")
                return
            status.set_text(f"{len(found)} schedule{'s' if len(found) != 1 else ''}")
            for gone in set(rows) - {s.schedule_id for s in found}:
                rows.pop(gone).delete()
            for s in found:
                if s.schedule_id in rows:
                    rows[s.schedule_id].set(s)
                else:
                    with column:
                        rows[s.schedule_id] = ScheduleRow(s, act)
            empty.set_visibility(not found)

        await refresh()
        ui.timer(REFRESH_S, refresh)

    @ui.page("/webhooks", title="Stepwatch webhooks")
    async def webhooks_page() -> None:
        header("Webhooks")
        status = ui.label("").classes("text-sm text-grey-7").mark("webhooks-status")
        ui.label("Subscriptions").classes("text-subtitle1")
        subs = ui.column().classes("w-full gap-0").mark("subscriptions")
        ui.label("Deliveries (newest first)").classes("text-subtitle1")
        with ui.element("div").classes("w-full sw-delivrow sw-head text-caption text-grey-7"):
            for title in ("delivery", "event", "job", "step / url", "state", "tries", "HTTP",
                          "last error", "next try"):
                ui.label(title)
        log = ui.column().classes("w-full gap-0").mark("deliveries")
        shown: dict[str, DeliveryRow] = {}
        listed: list[str] = []

        async def refresh() -> None:
            try:
                async with Client(target) as c:
                    found = await c.list_subscriptions()
                    deliveries = await c.list_deliveries(limit=100)
            except StepwatchError as err:
                status.set_text(f"cannot read webhooks: {err.message}; retrying")
                return
            status.set_text(f"{len(found)} subscription{'s' if len(found) != 1 else ''}")
            urls = {s.subscription_id: s.url for s in found}
            if [s.subscription_id for s in found] != listed:  # they change rarely
                listed[:] = [s.subscription_id for s in found]
                subs.clear()
                with subs:
                    for s in found:
                        subscription_line(s)
            for gone in set(shown) - {d.delivery_id for d in deliveries}:
                shown.pop(gone).row.delete()
            for index, d in enumerate(deliveries):
                row = shown.get(d.delivery_id)
                if row is None:
                    with log:
                        row = shown[d.delivery_id] = DeliveryRow(d, urls.get(d.subscription_id, ""))
                    row.row.move(log, target_index=index)
                else:
                    row.set(d)

        await refresh()
        ui.timer(REFRESH_S, refresh)
