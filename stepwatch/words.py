"""Words for people: "2m 03s", "3 min ago", "1 child". Pure: the page and the CLI share them."""

from __future__ import annotations

import datetime as dt

__all__ = ["ahead", "child_counts", "human_duration", "plural", "relative", "step_counts"]


def human_duration(seconds: float) -> str:
    """A length of time at the precision a person reads: 0.4s, 12s, 2m 03s, 1h 05m, 3d 04h."""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def relative(then: dt.datetime, now: dt.datetime) -> str:
    """How long ago ``then`` was, in one coarse unit ("just now" for the last 10 s; a time
    slightly ahead, from clock skew between hosts, also reads "just now")."""
    ago = (now - then).total_seconds()
    if ago < 10:
        return "just now"
    if ago < 60:
        return f"{int(ago)}s ago"
    if ago < 3600:
        return f"{int(ago // 60)} min ago"
    if ago < 86400:
        return f"{int(ago // 3600)} h ago"
    days = int(ago // 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"


def ahead(then: dt.datetime, now: dt.datetime) -> str:
    """How far ahead ``then`` is, in one coarse unit ("in 5 min"); "now" once it is due."""
    left = (then - now).total_seconds()
    if left < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if left >= size:
            return f"in {int(left // size)} {unit}"
    return f"in {int(left)}s"


def plural(n: int, one: str, many: str | None = None) -> str:
    """"1 step", "2 steps", "1 child", "3 children"."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def child_counts(completed: int, failed: int, running: int, total: int) -> str:
    """"3 ok · 1 failed / 6": a step's children as the server counted them, zeros left out
    ("" for a step without children)."""
    if not total:
        return ""
    parts = [f"{n} {word}" for n, word in ((completed, "ok"), (failed, "failed"),
                                           (running, "running")) if n]
    return f"{' · '.join(parts) or '0 done'} / {total}"


def step_counts(pairs: list[tuple[int, str]], total: int) -> str:
    """"5 completed · 1 failed of 6 steps": the non-zero counts, in the order given."""
    parts = [f"{n} {word}" for n, word in pairs if n]
    return f"{' · '.join(parts)} of {plural(total, 'step')}" if parts else plural(total, "step")
