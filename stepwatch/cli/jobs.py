"""Commands about jobs as a whole: definitions, submit, jobs, show, cancel, rerun."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from stepwatch import status
from stepwatch.cli.base import JSON, JobRef, app, call, connect, fail, run, state
from stepwatch.cli.output import Cell
from stepwatch.cli.watching import watch_job
from stepwatch.client import Backoff
from stepwatch.render import clock, duration, job_records, job_view, styled
from stepwatch.sanitize import safe
from stepwatch.v1 import orchestrator_pb2 as pb

__all__ = ["cancel", "definitions", "jobs", "rerun", "show", "submit"]

SUBMIT_RETRIES = Backoff(0.2, 2.0, max_tries=5)
Inputs = Annotated[list[str] | None, typer.Option(
    "--input", "-i", help="NAME=VALUE for a declared input (repeat for more); read by the "
                          "server as the input's type")]


def _inputs(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"--input {pair!r}: give NAME=VALUE")
        if name in out:
            fail(f"--input {name} is given twice")
        out[name] = value
    return out


@app.command()
def definitions(as_json: JSON = False) -> None:
    """List the server's job definitions (a file that does not parse is listed with its error).

    Piped: name, policy, steps (comma-separated), description or error; one per line."""
    found = call(lambda c: c.definitions())
    out = state.out
    if as_json:
        out.message(pb.ListJobDefinitionsResponse(definitions=found))
        return
    rows: list[list[Cell]] = [
        [d.name, "", "", Text(f"invalid definition file: {d.error}", style="red")] if d.error
        else [d.name, d.on_step_failure, ", ".join(d.step_names), d.description]
            for d in found]
    out.table(["name", "policy", "steps", "description"], rows)


def _submitted(job: pb.Job, as_json: bool, watch_: bool) -> None:
    out = state.out
    if as_json and not watch_:
        out.message(job)
    elif not out.tty:
        if not as_json:
            out.line(job.job_id)  # for `id=$(stepwatch submit ...)`
    else:
        out.line(Text.assemble("submitted ", job.job_id, " ",
                               safe(f"({job.definition_name}, {len(job.steps)} steps)", "dim")))
        if not watch_:
            out.line(Text(f"  stepwatch watch {job.job_id[:8]}", style="dim"))
    if watch_:
        watch_job(job.job_id, as_json)


@app.command()
def submit(name: Annotated[str | None, typer.Argument(help="a definition name on the server")] = None,
           file: Annotated[Path | None, typer.Option("--file", "-f", help="a TOML definition")] = None,
           watch_: Annotated[bool, typer.Option("--watch", "-w", help="then watch it")] = False,
           input_: Inputs = None, as_json: JSON = False) -> None:
    """Submit a job from a server definition NAME or a local TOML --file, with its inputs
    (--input NAME=VALUE).

    Prints the job id (piped: only the id); --json prints the job; --json --watch prints the
    watch stream, one object per line."""
    if name is None and file is None:
        fail("give a definition NAME (see `stepwatch definitions`) or --file FILE.toml")
    if name is not None and file is not None:
        fail("give a definition NAME or --file, not both")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}")

    given = _inputs(input_)

    async def go() -> pb.Job:
        # One request id for this command's tries: a retry after a lost answer is the same job.
        async with connect() as c:
            if file is not None:
                return await c.submit(definition_toml=text, backoff=SUBMIT_RETRIES, inputs=given)
            return await c.submit(name, backoff=SUBMIT_RETRIES, inputs=given)

    job = run(go(), where=str(file) if file is not None else None)
    _submitted(job, as_json, watch_)


def _status_number(value: str | None) -> int:
    if not value:
        return 0
    found = status.JOB.values_by_name.get("JOB_STATUS_" + value.upper())
    if found is None:
        fail(f"unknown status {value!r} (pending, running, completed, "
             "completed_with_failures, failed, cancelled)")
    return int(found.number)


@app.command()
def jobs(status_filter: Annotated[str | None, typer.Option(
             "--status", help="e.g. running, failed, completed_with_failures")] = None,
         limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 20,
         all_: Annotated[bool, typer.Option("--all", help="every job (pages through)")] = False,
         as_json: JSON = False) -> None:
    """List jobs, newest first.

    Piped: id, definition, status, steps completed/failed/total, created (ISO 8601),
    duration; one job per line."""
    number = _status_number(status_filter)

    async def go() -> tuple[list[pb.Job], str]:
        found: list[pb.Job] = []
        token = ""
        async with connect() as c:
            while all_ or len(found) < limit:
                want = 1000 if all_ else min(limit - len(found), 1000)
                page, token = await c.list_jobs(page_size=want, page_token=token, status=number)
                found += page
                if not token:
                    break
        return found, token

    found, more = run(go())
    out = state.out
    if as_json:
        out.message(pb.ListJobsResponse(jobs=found, next_page_token=more))
        return
    rows: list[list[Cell]] = [[j.job_id if not out.tty else j.job_id[:8], j.definition_name,
             styled(status.JOB, j.status),
             f"{j.step_counts.completed}/{j.step_counts.failed}/{j.step_counts.total}",
             j.created_at.ToJsonString() if not out.tty else clock(j.created_at),
             duration(j.started_at, j.finished_at)] for j in found]
    out.table(["job", "definition", "status", "steps ok/failed/total", "created", "duration"], rows)
    if more:
        out.note(f"showing the newest {len(found)} jobs; more with --limit N or --all")


@app.command()
def show(job_id: JobRef, as_json: JSON = False) -> None:
    """Show a job and its steps.

    Piped: a `job` record (id, definition, status, duration, failure), then a `step` record
    per step (index, name, type, status, children ok/failed/total, documents,
    attempt/max, duration, failure)."""
    job = call(lambda c: c.get_job(job_id))
    _print_job(job, as_json)


def _print_job(job: pb.Job, as_json: bool) -> None:
    out = state.out
    if as_json:
        out.message(job)
    elif out.tty:
        out.show(job_view(job))
    else:
        out.records(job_records(job))


@app.command()
def rerun(job_id: JobRef,
          failed_only: Annotated[bool, typer.Option("--failed-only", help="carry the COMPLETED "
                                                    "steps over; run only the rest")] = False,
          watch_: Annotated[bool, typer.Option("--watch", "-w", help="then watch it")] = False,
          input_: Inputs = None, as_json: JSON = False) -> None:
    """Run a finished job again, as a new job with the same inputs but those given (prints
    its id, as submit does)."""
    given = _inputs(input_)
    job = call(lambda c: c.rerun(job_id, failed_only=failed_only, inputs=given))
    carried = [s.name for s in job.steps if s.carried_from]
    if state.out.tty and not as_json:
        state.out.note(f"rerun of {job.rerun_of}"
                       + (f"; carried over: {', '.join(carried)}" if carried else ""))
    _submitted(job, as_json, watch_)


@app.command()
def cancel(job_id: JobRef, as_json: JSON = False) -> None:
    """Cancel a running job; prints the job as the cancel left it."""
    _print_job(call(lambda c: c.cancel(job_id)), as_json)
