"""Commands about what steps did: children, logs, documents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from google.protobuf import json_format
from rich.text import Text

from stepwatch import status
from stepwatch.cli.base import JSON, NOT_TERMINAL, STEP_EXIT_CODES, JobRef, app, connect, fail, run, state
from stepwatch.cli.output import Cell
from stepwatch.client import Backoff, Client
from stepwatch.render import chunk_lines, duration, plain, styled
from stepwatch.sanitize import printable
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.words import plural

__all__ = ["children", "documents", "logs"]

Limit = Annotated[int, typer.Option(min=1, help="at most this many")]
All = Annotated[bool, typer.Option("--all", help="every one (pages through)")]


def _find_step(job: pb.Job, ref: str) -> pb.Step:
    for s in job.steps:
        if ref in (s.name, s.step_id):
            return s
    fail(f"job {job.job_id[:8]} has no step {ref!r} (its steps: "
         f"{', '.join(s.name for s in job.steps[:20])}{' ...' if len(job.steps) > 20 else ''})")


_COUNT_FIELD: dict[int, str] = {pb.CHILD_STATUS_PENDING: "pending", pb.CHILD_STATUS_RUNNING: "running",
                pb.CHILD_STATUS_COMPLETED: "completed", pb.CHILD_STATUS_FAILED: "failed",
                pb.CHILD_STATUS_CANCELLED: "cancelled"}


@app.command()
def children(job_id: JobRef, step: str,
             status_filter: Annotated[str | None, typer.Option(
                 "--status", help="pending, running, completed, failed or cancelled")] = None,
             attempt: Annotated[int, typer.Option(help="0 = the latest")] = 0,
             limit: Limit = 100, all_: All = False, as_json: JSON = False) -> None:
    """A step's children, failed first, with their errors and results.

    Piped: index, status, key, error or result, duration; one child per line."""
    number = 0
    if status_filter:
        value = pb.ChildStatus.DESCRIPTOR.values_by_name.get("CHILD_STATUS_" + status_filter.upper())
        if value is None:
            fail(f"unknown child status {status_filter!r} "
                 "(pending, running, completed, failed, cancelled)")
        number = value.number

    async def go() -> tuple[pb.ListChildrenResponse, int | None]:
        out = pb.ListChildrenResponse()
        async with connect() as c:
            found = _find_step(await c.get_job(job_id), step)
            while all_ or len(out.children) < limit:
                page = await c.list_children(job_id, step, attempt=attempt, status=number,
                                             failed_first=True, page_token=out.next_page_token,
                                             page_size=1000 if all_ else
                                             min(limit - len(out.children), 1000))
                out.children.extend(page.children)
                out.attempt, out.next_page_token = page.attempt, page.next_page_token
                if not page.next_page_token:
                    break
        # The server's count for the attempt the counts are of (the latest).
        total = None
        if out.attempt == found.attempt:
            total = (found.children.total if not number
                     else getattr(found.children, _COUNT_FIELD.get(number, "total")))
        return out, total

    found, total = run(go())
    out = state.out
    if as_json:
        out.message(found)
        return
    rows: list[list[Cell]] = [[str(ch.index), styled(status.CHILD, ch.status), ch.key,
             ch.error.message if ch.HasField("error") else ch.result,
             duration(ch.started_at, ch.finished_at)] for ch in found.children]
    out.table(["#", "status", "key", "error / result", "duration"], rows,
              title=f"attempt {found.attempt}")
    shown = len(found.children)
    if total is not None and total > shown:
        out.note(f"showing {shown} of {total} children; more with --limit N or --all")
    elif total is None and found.next_page_token:
        out.note(f"showing {shown} children; more with --limit N or --all")


def _print_chunks(as_json: bool) -> Callable[[pb.WatchLogsResponse], None]:
    out = state.out

    def show(msg: pb.WatchLogsResponse) -> None:
        if msg.WhichOneof("kind") != "chunk":
            return
        if as_json:
            out.json_line(msg)
        else:
            for line in chunk_lines(msg.chunk):
                out.line(line)
    return show


def _header(step: pb.Step, text: str, as_json: bool) -> None:
    if as_json:
        state.out.json_line(step)  # a Step object introduces its chunks
    else:
        state.out.line(Text(printable(text), style="bold"))


async def _one_log(c: Client, job_id: str, step: str, attempt: int, child: int | None,
                   follow: bool, show: Callable[[pb.WatchLogsResponse], None]) -> None:
    backoff = Backoff() if follow else Backoff(max_tries=0)
    async for msg in c.watch_logs(job_id, step, attempt=attempt, child_index=child,
                                  backoff=backoff):
        if msg.WhichOneof("kind") == "chunk":
            show(msg)
        elif not follow:
            break  # caught up with a running step: --follow waits for more


async def _failed_logs(c: Client, job: pb.Job, as_json: bool) -> None:
    """Every FAILED step's latest attempt: its failed children's logs, each under a header
    (the whole attempt's log when no child failed: an init, a timeout, a lost cluster)."""
    show = _print_chunks(as_json)
    for s in job.steps:
        if s.status != pb.STEP_STATUS_FAILED:
            continue
        _header(s, f"== {s.name} (attempt {s.attempt}): {status.failure_text(s.failure)}",
                as_json)
        failed = (await c.list_children(job.job_id, s.step_id, attempt=s.attempt,
                                        status=pb.CHILD_STATUS_FAILED, page_size=1000)).children
        if not failed:
            await _one_log(c, job.job_id, s.step_id, s.attempt, None, False, show)
        for ch in failed:
            if not as_json:
                why = ch.error.message if ch.HasField("error") else ""
                head = why if why.startswith(ch.key) else f"{ch.key}: {why}"
                state.out.line(Text(printable(f"-- [{ch.index}] {head}"), style="bold"))
            await _one_log(c, job.job_id, s.step_id, s.attempt, ch.index, False, show)


@app.command()
def logs(job_id: JobRef, step: Annotated[str | None, typer.Argument(help="a step name or id")] = None,
         child: Annotated[int | None, typer.Option("--child", help="one child's output")] = None,
         attempt: Annotated[int, typer.Option(help="0 = the latest")] = 0,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="until the attempt ends, "
                                              "across disconnects")] = False,
         failed: Annotated[bool, typer.Option("--failed", help="the logs of every failed step "
                                              "(its failed children's)")] = False,
         as_json: JSON = False) -> None:
    """A step's output (every step's, in order, without STEP); stderr lines are marked.

    Without --follow it stops once it has caught up; with it, it follows the attempt to
    its end, across disconnects and server restarts, prints the attempt's outcome and exits
    as `watch` does (0 completed, 1 failed, 4 cancelled). --json: one WatchLogsResponse per
    line; where several steps are printed, each step's lines follow its Step object."""
    if failed and (step is not None or child is not None or follow):
        fail("--failed prints every failed step's log: give it without STEP, --child, --follow")
    if follow and step is None:
        fail("--follow follows one step: give STEP")
    show = _print_chunks(as_json)

    async def go() -> int:
        async with connect() as c:
            job = await c.get_job(job_id)
            if failed:
                await _failed_logs(c, job, as_json)
                return 0
            targets = [_find_step(job, step)] if step else list(job.steps)
            for s in targets:
                number = attempt or max(s.attempt, 1)
                if child is not None and number == s.attempt and child >= s.children.total:
                    fail(f"step {s.name!r} attempt {number} has no child {child} "
                         f"({plural(s.children.total, 'child', 'children')}, from 0)")
                if step is None:
                    _header(s, f"== {s.name}", as_json)
                await _one_log(c, job.job_id, s.step_id, number, child, follow, show)
            if not follow:
                return 0
            return _outcome(_find_step(await c.get_job(job.job_id), step or ""),
                            attempt or max(targets[0].attempt, 1), as_json)

    raise typer.Exit(run(go()))


def _outcome(step: pb.Step, number: int, as_json: bool) -> int:
    """After --follow: the attempt's status as the server decided it, and its exit code."""
    ended = next((a for a in step.attempts if a.attempt == number), None)
    if ended is None:
        state.out.note(f"{step.name} attempt {number}: no such attempt", "yellow")
        return NOT_TERMINAL
    why = f" ({status.failure_text(ended.failure)})" if ended.HasField("failure") else ""
    line = Text.assemble(printable(f"{step.name} attempt {number}: "),
                         styled(status.STEP, ended.status), printable(why))
    if as_json:
        state.out.errors.print(line)  # stdout holds JSON only
    else:
        state.out.line(line)
    return STEP_EXIT_CODES.get(ended.status, NOT_TERMINAL)


@app.command()
def documents(job_id: JobRef,
              tag: Annotated[list[str] | None, typer.Option("--tag", help="only these tags")] = None,
              limit: Limit = 100, all_: All = False, as_json: JSON = False) -> None:
    """A job's documents with their attributes.

    Piped: path, tags (comma-separated), attributes (k=v, comma-separated); one per line."""

    async def go() -> pb.ListDocumentsResponse:
        out = pb.ListDocumentsResponse()
        async with connect() as c:
            while all_ or len(out.documents) < limit:
                page = await c.list_documents(job_id, tag, page_token=out.next_page_token,
                                              page_size=1000 if all_ else
                                              min(limit - len(out.documents), 1000))
                out.documents.extend(page.documents)
                out.next_page_token = page.next_page_token
                if not page.next_page_token:
                    return out
        return out

    found = run(go())
    out = state.out
    if as_json:
        out.message(found)
        return
    rows = [[d.path, ", ".join(d.tags), ", ".join(
        f"{k}={plain(v)}" for k, v in sorted(json_format.MessageToDict(d.attrs).items()))]
        for d in found.documents]
    out.table(["path", "tags", "attributes"], rows)
    if found.next_page_token:
        out.note(f"showing {len(found.documents)} documents; more with --limit N or --all")
