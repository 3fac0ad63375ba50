"""The job page's graph and attempt timeline, as plain data for ECharts. Pure, no I/O.

Both draw only what the server sent: a node's colour is its step's status from the status
table; an attempt's span runs between the emitted_at of the events that began and ended it,
and its outcome is the status (or the retry's previous_attempt_failure) the server wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from stepwatch import status as labels
from stepwatch.v1 import orchestrator_pb2 as pb

from . import status_style

__all__ = ["Attempt", "AttemptLog", "graph_options", "levels", "timeline_options"]

MAX_TIMELINE_ROWS = 200  # attempts drawn at most; the rest are counted, not drawn
# ECharts writes a tooltip's text into the page as HTML: every string from the server is
# escaped in the browser before it is joined (NiceGUI evaluates ":"-prefixed keys as JS).
_ESCAPE = "s => String(s ?? '').replace(/[&<>\"'`]/g, c => '&#' + c.charCodeAt(0) + ';')"
GRAPH_TOOLTIP = f"p => {{ const e = {_ESCAPE}; return e(p.name) + ': ' + e(p.value); }}"
TIMELINE_TOOLTIP = f"p => {{ const e = {_ESCAPE}; return e(p.name) + ': ' + e(p.data && p.data.tip); }}"


def levels(steps: Sequence[pb.Step]) -> dict[str, int]:
    """Each step's column: the length of the longest chain of dependencies before it."""
    by_name = {s.name: s for s in steps}
    level: dict[str, int] = {}
    for s in sorted(steps, key=lambda s: s.index):
        # Iterative, not recursive: a 10,000-step chain must not hit the recursion limit.
        stack = [s.name]
        while stack:
            name = stack[-1]
            deps = [d for d in by_name[name].depends_on if d in by_name and d not in level]
            if deps:
                stack.extend(deps)
                continue
            stack.pop()
            if name not in level:
                level[name] = 1 + max((level[d] for d in by_name[name].depends_on if d in level),
                                      default=-1)
    return level


def graph_options(steps: Sequence[pb.Step]) -> dict[str, object]:
    """An ECharts graph: columns by dependency depth, rows in definition order, status colours."""
    level = levels(steps)
    rows: dict[int, int] = {}
    nodes = []
    for s in sorted(steps, key=lambda s: s.index):
        column = level[s.name]
        row = rows[column] = rows.get(column, -1) + 1
        look = status_style.look(status_style.STEP, s.status)
        nodes.append({"name": s.name, "x": column * 160, "y": row * 48,
                      "value": look.label, "itemStyle": {"color": look.colour},
                      "status": status_style.value_name(status_style.STEP, s.status)})
    links = [{"source": d, "target": s.name} for s in steps for d in s.depends_on]
    return {
        "tooltip": {":formatter": GRAPH_TOOLTIP},
        "animation": False,
        # Labels under their node, in a light box with dark text: readable on a light and on
        # a dark page; the margins leave room for the outer columns' labels (no clipping at
        # 390 px), and a long name wraps instead of running off the chart.
        "series": [{"type": "graph", "layout": "none", "roam": True, "symbolSize": 18,
                    "left": 70, "right": 70, "top": 20, "bottom": 40,
                    "edgeSymbol": ["none", "arrow"], "edgeSymbolSize": 8,
                    "label": {"show": True, "position": "bottom", "fontSize": 13,
                              "color": "#1f1f1f", "backgroundColor": "rgba(255,255,255,0.9)",
                              "padding": [2, 4], "borderRadius": 3, "width": 130,
                              "overflow": "break"},
                    "lineStyle": {"color": "#9e9e9e"}, "data": nodes, "links": links}],
    }


def graph_colours(steps: Sequence[pb.Step]) -> list[str]:
    """The nodes' colours in graph order: what a redraw changes while the shape stays."""
    return [status_style.look(status_style.STEP, s.status).colour
            for s in sorted(steps, key=lambda s: s.index)]


@dataclass
class Attempt:
    step: str
    attempt: int
    start_us: int
    end_us: int | None = None  # None while it runs
    status: int = pb.STEP_STATUS_RUNNING  # a StepStatus number, as the server wrote it
    note: str = ""  # why it ended, in the server's words


@dataclass
class AttemptLog:
    """Attempts of every step, as the step_changed events carry them (Step.attempts)."""

    attempts: dict[tuple[str, int], Attempt] = field(default_factory=dict)
    last_seq: int = 0

    def add(self, events: Iterable[pb.JobEvent]) -> bool:
        changed = False
        for ev in events:
            if ev.seq <= self.last_seq:
                continue  # seen already (history and live stream overlap)
            self.last_seq = ev.seq
            if ev.WhichOneof("change") != "step_changed":
                continue
            changed |= self._step(ev.step_changed)
        return changed

    def _step(self, s: pb.Step) -> bool:
        """The step's attempts exactly as the server recorded them (Step.attempts): drawn,
        never derived from the order of events."""
        changed = False
        for r in s.attempts:
            note = (f"{labels.label(labels.REASON, r.failure.reason)}: {r.failure.message}"
                    if r.HasField("failure") else "")
            drawn = Attempt(s.name, r.attempt, r.started_at.ToMicroseconds(),
                            r.finished_at.ToMicroseconds() if r.HasField("finished_at") else None,
                            r.status, note)
            if self.attempts.get((s.name, r.attempt)) != drawn:
                self.attempts[(s.name, r.attempt)] = drawn
                changed = True
        return changed


def timeline_options(log: AttemptLog, now_us: int) -> dict[str, object]:
    """An ECharts horizontal bar per attempt: an invisible bar to its start, then its span."""
    attempts = sorted(log.attempts.values(), key=lambda a: (a.start_us, a.step, a.attempt))
    hidden = max(0, len(attempts) - MAX_TIMELINE_ROWS)
    attempts = attempts[:MAX_TIMELINE_ROWS]
    origin = attempts[0].start_us if attempts else now_us
    names = [f"{a.step} #{a.attempt}" for a in attempts]
    offsets = [round((a.start_us - origin) / 1e6, 3) for a in attempts]
    spans = []
    for a in attempts:
        look = status_style.look(status_style.STEP, a.status)
        end = a.end_us if a.end_us is not None else now_us
        spans.append({"value": round(max(0, end - a.start_us) / 1e6, 3),
                      "itemStyle": {"color": look.colour},
                      "tip": f"{look.label}{' — ' + a.note if a.note else ''}"})
    return {
        "animation": False,
        "tooltip": {"trigger": "item", ":formatter": TIMELINE_TOOLTIP},
        "title": {"text": f"{hidden} more attempts not drawn" if hidden else "",
                  "textStyle": {"fontSize": 11}},
        "grid": {"left": 8, "right": 16, "top": 24, "bottom": 24, "containLabel": True},
        "xAxis": {"type": "value", "name": "s", "min": 0},
        "yAxis": {"type": "category", "data": names, "inverse": True},
        "series": [
            {"type": "bar", "stack": "t", "data": offsets, "itemStyle": {"color": "transparent"},
             "silent": True},
            {"type": "bar", "stack": "t", "data": spans, "barMaxWidth": 14},
        ],
    }
