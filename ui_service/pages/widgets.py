"""Small in-place-updatable elements shared by the pages."""

from __future__ import annotations

import datetime as dt
import time

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.timestamp_pb2 import Timestamp
from nicegui import ui

from stepwatch.status import Tone
from stepwatch.words import human_duration, relative

from .. import status_style

CSS = """
.sw-badge { display: inline-flex; align-items: center; gap: 4px; padding: 2px 10px;
  border-radius: 12px; color: #fff; font-weight: 600; font-size: 0.85rem; white-space: nowrap; }
.sw-animated .q-icon { animation: sw-spin 1.2s linear infinite; }
.sw-animated { animation: sw-pulse 1.6s ease-in-out infinite; }
@keyframes sw-spin { to { transform: rotate(360deg); } }
@keyframes sw-pulse { 50% { opacity: 0.75; } }
.sw-stale { filter: grayscale(1); opacity: 0.55; }
.sw-bar { display: flex; height: 10px; width: 160px; max-width: 40vw; background: #e0e0e0;
  border-radius: 5px; overflow: hidden; }
.sw-bar > div { height: 100%; }
.sw-failure { color: #c62828; }
.sw-note { color: #616161; }
.body--dark .sw-failure { color: #ff8a80; }
.body--dark .sw-note { color: #bdbdbd; }
.body--dark .sw-bar { background: #424242; }
.q-table__container { max-width: 100%; }
.sw-runview { display: grid; grid-template-columns: minmax(0, 36rem) minmax(0, 1fr); gap: 12px;
  align-items: start; }
@media (max-width: 900px) { .sw-runview { grid-template-columns: minmax(0, 1fr); } }
"""


class Badge:
    """A status badge: label, colour and icon straight from the status table."""

    def __init__(self, enum: EnumDescriptor, number: int) -> None:
        self.enum = enum
        with ui.element("span").classes("sw-badge") as self.element:
            self.icon = ui.icon("help_outline").classes("text-base")
            self.label = ui.label("")
        self.set(number)

    def set(self, number: int) -> None:
        look = status_style.look(self.enum, number)
        self.element.props["data-status"] = status_style.value_name(self.enum, number)
        self.element.style["background-color"] = look.colour
        if look.animated:
            self.element.classes(add="sw-animated")
        else:
            self.element.classes(remove="sw-animated")
        self.icon.set_name(look.icon)
        self.label.set_text(look.label)


class ChildBar:
    """Completed / failed / running out of total, as the server counted them."""

    def __init__(self) -> None:
        with ui.row().classes("items-center gap-2 no-wrap"):
            with ui.element("div").classes("sw-bar") as self.bar:
                self.done = ui.element("div").style(f"background:{_tone(Tone.SUCCESS)}")
                self.failed = ui.element("div").style(f"background:{_tone(Tone.FAILURE)}")
                self.running = ui.element("div").style(f"background:{_tone(Tone.ACTIVE)}")
            self.text = ui.label("").classes("text-xs text-grey-8")

    def set(self, completed: int, failed: int, running: int, total: int) -> None:
        for el, n in ((self.done, completed), (self.failed, failed), (self.running, running)):
            el.style["width"] = f"{100 * n / total:.2f}%" if total else "0%"
        self.text.set_text(f"{completed} ok · {failed} failed · {running} running / {total}"
                           if total else "no children")


def _tone(tone: Tone) -> str:
    return status_style.TONE_LOOK[tone][0]


def date_time(ts: Timestamp) -> str:
    """The full local date and time ("2026-11-26 00:41:02"), or "–"."""
    if not ts.ByteSize():
        return "–"
    return ts.ToDatetime(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def ago(ts: Timestamp, now_s: float | None = None) -> str:
    """How long ago, in words a person reads at a glance ("3 min ago")."""
    if not ts.ByteSize():
        return ""
    now = dt.datetime.fromtimestamp(now_s if now_s is not None else time.time(), dt.UTC)
    return relative(ts.ToDatetime(dt.UTC), now)


def clock(ts: Timestamp) -> str:
    if not ts.ByteSize():
        return "–"
    return ts.ToDatetime(dt.UTC).astimezone().strftime("%H:%M:%S")


def duration(start: Timestamp, end: Timestamp) -> str:
    """"2m 03s" from start to end (to now while it runs), "–" before it started."""
    if not start.ByteSize():
        return "–"
    stop = end.ToMicroseconds() if end.ByteSize() else time.time_ns() // 1000
    return human_duration((stop - start.ToMicroseconds()) / 1e6)


def user_menu() -> None:
    """Who is logged in, and a way out (only when the UI has users). Checked again every
    second: a user removed from the users file is sent to log in, a re-roled one gets the
    page their new role offers."""
    from .. import access

    if not access.get().required:
        return
    user = access.current()
    shown_role = user.role if user is not None else None

    def recheck() -> None:
        now = access.current()
        if now is None:
            ui.navigate.to("/login")
        elif now.role != shown_role:
            ui.navigate.reload()

    with ui.row().classes("items-center gap-1 text-xs"):
        ui.label(f"{user.name} ({user.role.name.lower()})" if user else "").mark("user").classes(
            "sw-user")
        if access.get().proxy_header is None:
            ui.button("log out", on_click=lambda: ui.navigate.to("/logout")).props(
                "flat dense no-caps").mark("logout")
    ui.timer(1.0, recheck)
