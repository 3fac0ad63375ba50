"""`stepwatch watch`: follow a job to its end; the exit code says how it ended.

Three ways to show it, one stream: on a terminal a live table drawn from the latest state
at most RENDERS_PER_S times a second; on a pipe a line per status change as it happens and
the job's records at the end; with --json every stream message, one object per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Annotated, Protocol

import typer
from rich.live import Live

from stepwatch import status
from stepwatch.cli.base import EXIT_CODES, JSON, NOT_TERMINAL, OptionalJobRef, app, connect, fail, run, state
from stepwatch.cli.output import Output
from stepwatch.jobview import LiveJob, is_terminal
from stepwatch.render import clock, job_records, job_view, styled
from stepwatch.sanitize import safe
from stepwatch.v1 import orchestrator_pb2 as pb

__all__ = ["RENDERS_PER_S", "watch", "watch_job"]

#: The job view is drawn at most this often: the latest state, however many events came.
RENDERS_PER_S = 10


class _Sink(Protocol):
    def changed(self, msg: pb.WatchJobResponse, job: LiveJob) -> None: ...
    def retrying(self, message: str) -> None: ...
    async def close(self, job: pb.Job) -> None: ...


class _Json:
    def __init__(self, out: Output) -> None:
        self.out = out

    def changed(self, msg: pb.WatchJobResponse, job: LiveJob) -> None:
        if msg.WhichOneof("kind") != "heartbeat":
            self.out.json_line(msg)

    def retrying(self, message: str) -> None:
        self.out.note(message, "yellow")

    async def close(self, job: pb.Job) -> None:
        return None


class _Lines:
    """A pipe: a line when the job or a step changes status (time, name, status, why)."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.seen: dict[str, int] = {}

    def _status(self, key: str, name: str, enum: object, number: int, failure: pb.Failure | None,
                at: str) -> None:
        if self.seen.get(key) == number:
            return
        self.seen[key] = number
        why = status.failure_text(failure) if failure is not None else ""
        self.out.records([[at, name, status.label(enum, number), why]])  # type: ignore[arg-type]

    def changed(self, msg: pb.WatchJobResponse, job: LiveJob) -> None:
        kind = msg.WhichOneof("kind")
        now = dt.datetime.now().strftime("%H:%M:%S")
        if kind == "snapshot":
            j = msg.snapshot.job
            self._status("", j.definition_name, status.JOB, j.status,
                         j.failure if j.HasField("failure") else None, now)
            for s in j.steps:
                self._status(s.step_id, s.name, status.STEP, s.status,
                             s.failure if s.HasField("failure") else None, now)
        elif kind == "event":
            ev = msg.event
            at = clock(ev.emitted_at) if ev.HasField("emitted_at") else now
            if ev.HasField("step_changed"):
                s = ev.step_changed
                self._status(s.step_id, s.name, status.STEP, s.status,
                             s.failure if s.HasField("failure") else None, at)
            elif ev.HasField("job_changed"):
                j = ev.job_changed
                self._status("", j.definition_name, status.JOB, j.status,
                             j.failure if j.HasField("failure") else None, at)

    def retrying(self, message: str) -> None:
        self.out.note(message, "yellow")

    async def close(self, job: pb.Job) -> None:
        self.out.records(job_records(job))


class _Screen:
    """A terminal: the latest state, drawn at most RENDERS_PER_S times a second."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.live = Live(console=out.console, auto_refresh=False)
        self.dirty = asyncio.Event()
        self.job = LiveJob()
        self.live.start()
        self.painter = asyncio.create_task(self._paint())

    def _draw(self) -> None:
        self.live.update(job_view(self.job.job, self.out.console.height), refresh=True)

    async def _paint(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            self._draw()
            await asyncio.sleep(1 / RENDERS_PER_S)

    def changed(self, msg: pb.WatchJobResponse, job: LiveJob) -> None:
        self.job = job
        self.dirty.set()

    def retrying(self, message: str) -> None:
        self.live.console.print(safe(message, "yellow"))

    async def close(self, job: pb.Job) -> None:
        self.painter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.painter
        self._draw()  # the last state, whenever the last paint was
        self.live.stop()


def watch_job(job_id: str, as_json: bool) -> None:
    """Follow ``job_id`` to its end and exit with its code (EXIT_CODES)."""
    out = state.out

    async def go() -> pb.Job:
        current = LiveJob()
        async with connect() as c:
            # A plain call first: an orchestrator never reached fails here, after the call's
            # bounded wait (exit 2), instead of a stream retrying forever; a stream that
            # broke later is resumed across restarts.
            current.reset(await c.get_job(job_id))
            sink: _Sink = _Json(out) if as_json else _Screen(out) if out.tty else _Lines(out)
            try:
                async for msg in c.watch(current.job.job_id, on_retry=lambda e, d: sink.retrying(
                        f"cannot reach the orchestrator at {state.target} ({e.code.name}); "
                        f"retrying in {d:.1f} s")):
                    kind = msg.WhichOneof("kind")
                    if kind == "snapshot":
                        current.reset(msg.snapshot.job)
                    elif kind == "event":
                        current.apply(msg.event)
                    sink.changed(msg, current)
            finally:
                await sink.close(current.job)
        return current.job

    job = run(go())
    if not is_terminal(job):
        out.note("the stream ended before the job was terminal", "yellow")
        raise typer.Exit(NOT_TERMINAL)
    raise typer.Exit(EXIT_CODES.get(job.status, NOT_TERMINAL))


def _pick(latest: bool) -> str:
    """The job to watch when none was named: the newest (--latest), or one the person picks
    from the running jobs on a terminal."""
    out = state.out
    if not latest and not out.tty:
        fail("give a JOB id, or --latest for the newest job")

    async def go() -> list[pb.Job]:
        async with connect() as c:
            if latest:
                return (await c.list_jobs(page_size=1))[0]
            running, _ = await c.list_jobs(page_size=30, status=pb.JOB_STATUS_RUNNING)
            pending, _ = await c.list_jobs(page_size=30, status=pb.JOB_STATUS_PENDING)
            return running + pending

    found = run(go())
    if not found:
        fail("there are no jobs yet" if latest else
             "no job is running or pending: give a JOB id, or --latest for the newest job")
    if latest or len(found) == 1:
        return found[0].job_id
    out.table(["#", "job", "definition", "status", "started"],
              [[str(i), j.job_id[:8], j.definition_name, styled(status.JOB, j.status),
                clock(j.started_at)] for i, j in enumerate(found, 1)])
    while True:
        choice = typer.prompt("Watch which job? (#)", default="", show_default=False)
        if choice.strip().isdigit() and 1 <= int(choice) <= len(found):
            return found[int(choice) - 1].job_id
        out.note(f"give a number from 1 to {len(found)}", "yellow")


@app.command()
def watch(job_id: OptionalJobRef = None,
          latest: Annotated[bool, typer.Option("--latest", help="the newest job")] = False,
          as_json: JSON = False) -> None:
    """Follow a job live until it is terminal.

    Exit code: 0 completed, 1 failed, 3 completed with failures, 4 cancelled, 2 an error,
    5 the stream ended first. Without JOB: pick from the running jobs (on a terminal), or
    --latest. Piped: a line per status change (time, name, status, why), then the job's
    records as `show` prints them. --json: every stream message, one object per line."""
    watch_job(job_id or _pick(latest), as_json)
