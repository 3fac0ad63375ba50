"""How the CLI draws what the server sent: styled statuses, the job table, log lines.

Statuses are printed as the server sent them: colour comes from the value's tone in the
status table (stepwatch.status) through TONE_STYLE, and a value this build does not know
prints as unknown. Pure: nothing here talks to the server.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from stepwatch import status
from stepwatch.jobview import input_texts
from stepwatch.sanitize import printable, safe
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.words import human_duration

__all__ = ["TONE_STYLE", "chunk_lines", "clock", "counts", "duration",
           "job_records", "job_view", "plain", "print_chunk", "rows_that_matter", "styled"]

# The terminal's style by tone: the CLI's one decision, from the status table's tone.
TONE_STYLE = {
    status.Tone.WAITING: "dim", status.Tone.ACTIVE: "bold blue", status.Tone.SUCCESS: "green",
    status.Tone.PARTIAL: "bold dark_orange", status.Tone.FAILURE: "bold red",
    status.Tone.SKIPPED: "magenta", status.Tone.CANCELLED: "yellow",
    status.Tone.UNKNOWN: "dim italic",
}
def styled(enum: Any, number: int) -> Text:
    shown = status.present(enum, number)
    return Text(shown.label, style=TONE_STYLE[shown.tone])


def clock(ts: Any) -> str:
    return ts.ToDatetime(dt.UTC).astimezone().strftime("%H:%M:%S") if ts.ByteSize() else "-"


def duration(start: Any, end: Any) -> str:
    """"2m 03s" from start to end (to now while it runs); "-" before it started."""
    if not start.ByteSize():
        return "-"
    stop = end.ToDatetime(dt.UTC) if end.ByteSize() else dt.datetime.now(dt.UTC)
    return human_duration((stop - start.ToDatetime(dt.UTC)).total_seconds())


def counts(c: pb.ChildCounts) -> str:
    """Children as "ok/failed/total"; empty for a step without children."""
    return f"{c.completed}/{c.failed}/{c.total}" if c.total else ""


def job_records(job: pb.Job) -> list[list[str]]:
    """The job for a pipe: a ``job`` record, then a ``step`` record per step, every field
    whole (see the README for the columns)."""
    why = status.failure_text(job.failure) if job.HasField("failure") else ""
    out = [["job", job.job_id, job.definition_name, status.label(status.JOB, job.status),
            duration(job.started_at, job.finished_at), why]]
    out += [["input", name, value] for name, value in input_texts(job)]
    if job.schedule_id:
        out.append(["schedule", job.schedule_id, job.nominal_time.ToJsonString()])
    for s in job.steps:
        note = status.failure_text(s.failure) if s.HasField("failure") else ""
        out.append(["step", str(s.index), s.name, s.type, status.label(status.STEP, s.status),
                    counts(s.children), str(s.document_count), f"{s.attempt}/{s.max_attempts}",
                    duration(s.started_at, s.finished_at),
                    f"{note} (tolerated: the job went on)" if s.tolerated else note])
    return out


def rows_that_matter(steps: list[pb.Step], room: int) -> tuple[list[pb.Step], str]:
    """At most ``room`` steps for a screen: failed, running, then the rest by index; and a
    summary of what was left out. Pure: the statuses are the server's, only picked."""
    if len(steps) <= room:
        return steps, ""
    rank = {status.Tone.FAILURE: 0, status.Tone.ACTIVE: 1, status.Tone.PARTIAL: 1}
    keep = sorted(steps, key=lambda s: (rank.get(status.present(status.STEP, s.status).tone, 2),
                                        s.index))[:max(room, 1)]
    kept = {s.step_id for s in keep}
    hidden: dict[str, int] = {}
    for s in steps:
        if s.step_id not in kept:
            name = status.present(status.STEP, s.status).label.lower()
            hidden[name] = hidden.get(name, 0) + 1
    summary = ", ".join(f"{n} {name}" for name, n in hidden.items())
    return sorted(keep, key=lambda s: s.index), f"… {len(steps) - len(keep)} more steps ({summary})"


def job_view(job: pb.Job, height: int | None = None) -> Group:
    """The job as a table; with a terminal ``height``, failed and running steps stay in view."""
    head = Text.assemble(safe(job.definition_name), " ", safe(job.job_id[:8], "dim"), "  ",
                         styled(status.JOB, job.status))
    if job.inputs:
        head.append(printable("\ninputs: " + ", ".join(f"{n}={v}" for n, v in input_texts(job))),
                    style="dim")
    if job.schedule_id:
        head.append(printable(f"\nscheduled: {job.schedule_id[:8]} for "
                              f"{job.nominal_time.ToDatetime(dt.UTC).astimezone():%Y-%m-%d %H:%M:%S}"),
                    style="dim")
    if job.HasField("failure"):
        head.append(printable(f"\n{status.failure_text(job.failure)}"), style="red")
    table = Table(show_edge=False)
    for col in ("#", "step", "type", "status", "children ok/failed/total", "docs", "attempt",
                "duration"):
        table.add_column(col)
    notes: list[Text] = []
    failures = sum(s.HasField("failure") for s in job.steps)
    room = None if height is None else max(3, height - 8 - 2 * min(failures, 5))
    steps, hidden = rows_that_matter(list(job.steps), room) if room else (list(job.steps), "")
    for s in steps:
        table.add_row(str(s.index), safe(s.name), safe(s.type), styled(status.STEP, s.status),
                      counts(s.children), str(s.document_count or ""),
                      f"{s.attempt}/{s.max_attempts}", duration(s.started_at, s.finished_at))
        if s.HasField("failure"):
            mark = " (tolerated: the job went on)" if s.tolerated else ""
            notes.append(safe(f"{s.name}: {status.failure_text(s.failure)}{mark}",
                              style=TONE_STYLE[status.present(status.STEP, s.status).tone],
                              overflow="ellipsis", no_wrap=height is not None))
    if height is not None and len(notes) > 5:
        notes = [*notes[:5], Text(f"… {len(notes) - 5} more failure notes (stepwatch show)",
                                  style="dim")]
    summary = [Text(hidden, style="dim", no_wrap=True, overflow="ellipsis")] if hidden else []
    return Group(head, table, *summary, *notes)


def chunk_lines(chunk: pb.LogChunk) -> list[Text]:
    """A log chunk's lines as shown: ``[child] `` before a child's, ``stderr|`` marking stderr,
    the orchestrator's own lines dim."""
    who = f"[{chunk.child_index}] " if chunk.HasField("child_index") else ""
    out = []
    for line in chunk.text.splitlines():
        if chunk.stream == pb.LOG_STREAM_STDERR:
            out.append(Text.assemble(who, ("stderr|", "red"), " ", safe(line)))
        elif chunk.stream == pb.LOG_STREAM_SYSTEM:
            out.append(Text.assemble(who, safe(line, "dim")))
        else:
            out.append(Text.assemble(who, safe(line)))
    return out


def print_chunk(console: Console, chunk: pb.LogChunk) -> None:
    for line in chunk_lines(chunk):
        console.print(line, highlight=False, soft_wrap=True)


def plain(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
