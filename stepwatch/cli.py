"""The `stepwatch` command: definitions, submit, jobs, show, watch, cancel.

Statuses are printed as the server sent them: colour comes from the value's
name through TONE_STYLE (from stepwatch.status), and a value this build does not know
prints as unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import grpc
import typer
from google.protobuf import json_format
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from stepwatch import status
from stepwatch.client import Backoff, Client, Credentials, default_target
from stepwatch.errors import StepwatchError
from stepwatch.jobview import LiveJob, is_terminal
from stepwatch.passwords import hash_password
from stepwatch.render import clock, duration, job_view, plain, print_chunk, styled
from stepwatch.sanitize import printable, safe
from stepwatch.tokens import new_token
from stepwatch.v1 import orchestrator_pb2 as pb

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, help="Stepwatch: run jobs and watch every step's true status.")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error is one line, however long

#: The job view is drawn at most this often: the latest state, however many events came.
RENDERS_PER_S = 10

# `watch` and `submit --watch` exit with these, so scripts can tell outcomes apart.
EXIT_CODES = {pb.JOB_STATUS_COMPLETED: 0, pb.JOB_STATUS_FAILED: 1,
              pb.JOB_STATUS_COMPLETED_WITH_FAILURES: 3, pb.JOB_STATUS_CANCELLED: 4}


class State:
    target: str = ""
    credentials: Credentials = Credentials()


state = State()


@app.callback()
def main(ctx: typer.Context,
         target: Annotated[str, typer.Option(envvar="STEPWATCH_TARGET",
                                             help="orchestrator host:port")] = default_target(),
         token: Annotated[str | None, typer.Option(envvar="STEPWATCH_TOKEN",
                                                   help="bearer token (see `token create`)")] = None,
         token_file: Annotated[str | None, typer.Option(envvar="STEPWATCH_TOKEN_FILE",
                                                        help="a file holding the token")] = None,
         tls_ca: Annotated[str | None, typer.Option(envvar="STEPWATCH_TLS_CA",
                                                    help="CA to trust (PEM): talk TLS")] = None,
         tls_cert: Annotated[str | None, typer.Option(envvar="STEPWATCH_TLS_CERT",
                                                      help="client certificate (PEM), mTLS")] = None,
         tls_key: Annotated[str | None, typer.Option(envvar="STEPWATCH_TLS_KEY",
                                                     help="its private key (PEM)")] = None) -> None:
    state.target = target
    # typer vendors click: the source is compared by name (COMMANDLINE, ENVIRONMENT, ...).
    if token and getattr(ctx.get_parameter_source("token"), "name", "") == "COMMANDLINE":
        err_console.print("warning: --token on the command line is visible to every user of "
                          "this machine (ps); use --token-file or STEPWATCH_TOKEN_FILE",
                          style="yellow", markup=False)
    try:
        state.credentials = Credentials.from_env(token, token_file, tls_ca, tls_cert, tls_key)
    except OSError as exc:
        _fail(f"cannot read the token file: {exc}")


@app.command("ui-user")
def ui_user(name: Annotated[str, typer.Option(help="the login name")],
            role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
            password: Annotated[str, typer.Option(prompt=True, hide_input=True,
                                                  confirmation_prompt=True)] = "") -> None:
    """Print a --ui-auth-file line for a web UI user (the password is asked for)."""
    if role not in ("viewer", "operator", "admin"):
        _fail("role must be one of viewer, operator, admin")
    if not name or any(c.isspace() for c in name):
        _fail("the name must be one word")
    console.print(f"{name} {hash_password(password)} {role}", soft_wrap=True, markup=False)


@app.command()
def migrate(db_url: Annotated[str, typer.Option(
        envvar="STEPWATCH_DB_URL", help="the orchestrator's database (a SQLAlchemy URL)")]) -> None:
    """Upgrade a database's schema to this version's, for operators who migrate before a
    rollout (replicas also migrate at start, one at a time, under an advisory lock).

    The schema is the server's: this runs ``python -m orchestrator_service --migrate-only``
    (the client package imports nothing of the server)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("orchestrator_service") is None:
        _fail("stepwatch migrate needs the server installed here (the orchestrator_service "
              "package); or run `python -m orchestrator_service --migrate-only` where it is")
    done = subprocess.run([sys.executable, "-m", "orchestrator_service", "--migrate-only",
                           "--port", "0", "--db-url", db_url],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        _fail(lines[-1].removeprefix("stepwatch orchestrator: ") if lines else
              f"migration failed (exit {done.returncode})")
    console.print("database schema is at head")


token_app = typer.Typer(help="Tokens for an orchestrator started with --auth-token-file.")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(role: Annotated[str, typer.Option(help="viewer, operator or admin")],
                 name: Annotated[str, typer.Option(help="who or what uses it, e.g. ci")]) -> None:
    """Print a new token, and the line to add to the orchestrator's token file."""
    try:
        token, line = new_token(role, name)
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"token (give it to {name}; it is shown once): {token}", soft_wrap=True,
                  markup=False)
    console.print("add this line to the --auth-token-file, then `kill -HUP` the orchestrator:")
    console.print(line, soft_wrap=True, markup=False)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except StepwatchError as err:
        if err.code == grpc.StatusCode.UNAVAILABLE:
            err_console.print(Text.assemble(("error", "bold red"), ": cannot reach the "
                                            f"orchestrator at {printable(state.target)} (",
                                            safe(err.message), ")"))
        else:
            err_console.print(Text.assemble(("error", "bold red"), f" ({err.code.name}): ",
                                            safe(err.message)))
        for v in err.violations:
            err_console.print(Text.assemble("  ", safe(v.field, "red"), ": ", safe(v.description)))
        raise typer.Exit(2) from None


def _fail(message: str) -> NoReturn:
    """A usage error: one clear line, exit 2."""
    err_console.print(Text.assemble(("error", "bold red"), ": ", safe(message)))
    raise typer.Exit(2)


MIN_PREFIX = 8  # the server resolves a job id prefix of this many characters or more


def _job_ref(value: str) -> str:
    """A job id or a prefix the server can resolve; a shorter one can never match."""
    if len(value) < MIN_PREFIX:
        _fail(f"job id prefix {value!r} is too short: give {MIN_PREFIX} or more characters "
              "(`stepwatch jobs` lists the ids)")
    return value


JobRef = Annotated[str, typer.Argument(callback=_job_ref,
                                       help="a job id, or a unique prefix of 8+ characters")]


def _print_json(messages: list[Any] | Any) -> None:
    items = messages if isinstance(messages, list) else [messages]
    text = [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in items]
    console.print_json(data=text if isinstance(messages, list) else text[0])


def _call(method: Callable[[Client], Awaitable[T]]) -> T:
    """One request to the server, with errors printed as _run prints them."""

    async def go() -> T:
        async with Client(state.target, credentials=state.credentials) as client:
            return await method(client)

    return _run(go())


@app.command()
def definitions(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
                ) -> None:
    """List the server's job definitions (a file that does not parse is listed with its error)."""

    found = _call(lambda c: c.definitions())
    if as_json:
        _print_json(found)
        return
    table = Table("name", "policy", "steps", "description")
    for d in found:
        if d.error:
            table.add_row(safe(d.name), "", "", safe(f"invalid definition file: {d.error}", "red"))
        else:
            table.add_row(safe(d.name), safe(d.on_step_failure), safe(", ".join(d.step_names)),
                          safe(d.description))
    console.print(table)


@app.command()
def submit(name: Annotated[str | None, typer.Argument(help="a definition name on the server")] = None,
           file: Annotated[Path | None, typer.Option("--file", "-f", help="a TOML definition")] = None,
           watch_: Annotated[bool, typer.Option("--watch", "-w", help="then watch it")] = False) -> None:
    """Submit a job from a server definition NAME or a local TOML --file."""
    if name is None and file is None:
        _fail("give a definition NAME (see `stepwatch definitions`) or --file FILE.toml")
    if name is not None and file is not None:
        _fail("give a definition NAME or --file, not both")

    # One request id for this command's tries: a retry after a lost answer is the same job.
    retries = Backoff(0.2, 2.0, max_tries=5)
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}")
        job = _call(lambda c: c.submit(definition_toml=text, backoff=retries))
    else:
        job = _call(lambda c: c.submit(name, backoff=retries))
    console.print(safe(f"submitted {job.job_id}"))
    if watch_:
        watch(job.job_id)


@app.command()
def jobs(status_filter: Annotated[str | None, typer.Option(
             "--status", help="e.g. running, failed, completed_with_failures")] = None,
         limit: Annotated[int, typer.Option(help="how many")] = 20,
         as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """List jobs, newest first."""
    number = 0
    if status_filter:
        name = "JOB_STATUS_" + status_filter.upper()
        value = status.JOB.values_by_name.get(name)
        if value is None:
            _fail(f"unknown status {status_filter!r}")
        number = value.number

    jobs_page, _ = _call(lambda c: c.list_jobs(page_size=limit, status=number))
    if as_json:
        _print_json(jobs_page)
        return
    table = Table("job", "definition", "status", "steps done/failed/total", "created", "duration")
    for j in jobs_page:
        sc = j.step_counts
        table.add_row(safe(j.job_id[:8]), safe(j.definition_name), styled(status.JOB, j.status),
                      f"{sc.completed}/{sc.failed}/{sc.total}", clock(j.created_at),
                      duration(j.started_at, j.finished_at))
    console.print(table)


@app.command()
def show(job_id: JobRef,
         as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """Show a job and its steps."""

    job = _call(lambda c: c.get_job(job_id))
    if as_json:
        _print_json(job)
    else:
        console.print(job_view(job))


@app.command()
def watch(job_id: JobRef) -> None:
    """Follow a job live until it is terminal; the exit code says how it ended."""

    async def go() -> pb.Job:
        current = LiveJob()
        async with Client(state.target, credentials=state.credentials) as c:
            with Live(console=console, auto_refresh=False) as live:
                def draw() -> None:
                    live.update(job_view(current.job, console.height), refresh=True)

                changed = asyncio.Event()

                async def painter() -> None:
                    """Draws the latest state at most RENDERS_PER_S times a second: a stream
                    of thousands of events is applied as fast as it comes, drawn ~10 times."""
                    while True:
                        await changed.wait()
                        changed.clear()
                        draw()
                        await asyncio.sleep(1 / RENDERS_PER_S)

                paint = asyncio.create_task(painter())
                try:
                    async for msg in c.watch(job_id, on_retry=lambda e, d: live.console.print(
                            safe(f"cannot reach the orchestrator at {state.target}", "yellow"),
                            f"({e.code.name}); retrying in {d:.1f} s")):
                        kind = msg.WhichOneof("kind")
                        if kind == "snapshot":
                            current.reset(msg.snapshot.job)
                        elif kind == "event":
                            current.apply(msg.event)
                        changed.set()
                finally:
                    paint.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await paint
                draw()  # the last state, whenever the last paint was
        return current.job

    job = _run(go())
    if not is_terminal(job):
        err_console.print("the stream ended before the job was terminal")
        raise typer.Exit(5)
    raise typer.Exit(EXIT_CODES.get(job.status, 5))


@app.command()
def children(job_id: JobRef, step: str,
             status_filter: Annotated[str | None, typer.Option(
                 "--status", help="pending, running, completed, failed or cancelled")] = None,
             attempt: Annotated[int, typer.Option(help="0 = the latest")] = 0,
             limit: Annotated[int, typer.Option(help="at most this many")] = 100) -> None:
    """A step's children, failed first, with their errors and results."""
    number = 0
    if status_filter:
        value = pb.ChildStatus.DESCRIPTOR.values_by_name.get("CHILD_STATUS_" + status_filter.upper())
        if value is None:
            _fail(f"unknown child status {status_filter!r}")
        number = value.number

    async def go() -> tuple[list[pb.Child], int]:
        out: list[pb.Child] = []
        token = ""
        async with Client(state.target, credentials=state.credentials) as c:
            while len(out) < limit:
                page = await c.list_children(job_id, step, attempt=attempt, status=number,
                                             failed_first=True, page_size=min(limit, 1000),
                                             page_token=token)
                out += page.children
                if not (token := page.next_page_token):
                    break
        return out[:limit], page.attempt

    found, used = _run(go())
    table = Table("#", "status", "key", "error / result", "duration", title=Text(f"attempt {used}"))
    for ch in found:
        detail = ch.error.message if ch.HasField("error") else ch.result
        table.add_row(str(ch.index), styled(status.CHILD, ch.status), safe(ch.key), safe(detail),
                      duration(ch.started_at, ch.finished_at))
    console.print(table)


@app.command()
def logs(job_id: JobRef, step: Annotated[str | None, typer.Argument(help="a step name or id")] = None,
         child: Annotated[int | None, typer.Option("--child", help="one child's output")] = None,
         attempt: Annotated[int, typer.Option(help="0 = the latest")] = 0,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="until the attempt ends, "
                                              "across disconnects")] = False) -> None:
    """A step's output (every step's, in order, without STEP); stderr lines are marked.

    Without --follow it stops once it has caught up; with it, it follows the attempt to
    its end, across disconnects and server restarts, printing each line once."""

    async def go() -> None:
        async with Client(state.target, credentials=state.credentials) as c:
            steps = [step] if step else [s.name for s in (await c.get_job(job_id)).steps]
            backoff = Backoff() if follow else Backoff(max_tries=0)
            for name in steps:
                if not step:
                    console.print(safe(f"== {name}", "bold"), highlight=False)
                async for msg in c.watch_logs(job_id, name, attempt=attempt, child_index=child,
                                              backoff=backoff):
                    if msg.WhichOneof("kind") == "chunk":
                        print_chunk(console, msg.chunk)
                    elif not follow:
                        break  # caught up with a running step: --follow waits for more

    _run(go())


@app.command()
def documents(job_id: JobRef,
              tag: Annotated[list[str] | None, typer.Option("--tag", help="only these tags")] = None,
              ) -> None:
    """A job's documents with their attributes."""

    async def go() -> list[pb.Document]:
        out: list[pb.Document] = []
        token = ""
        async with Client(state.target, credentials=state.credentials) as c:
            while True:
                page = await c.list_documents(job_id, tag, page_size=1000, page_token=token)
                out += page.documents
                if not (token := page.next_page_token):
                    return out

    table = Table("path", "tags", "attributes")
    for d in _run(go()):
        attrs = ", ".join(f"{k}={plain(v)}" for k, v in sorted(
            json_format.MessageToDict(d.attrs).items()))
        table.add_row(safe(d.path), safe(", ".join(d.tags)), safe(attrs))
    console.print(table)


@app.command()
def rerun(job_id: JobRef,
          failed_only: Annotated[bool, typer.Option("--failed-only", help="carry the COMPLETED "
                                                    "steps over; run only the rest")] = False,
          watch_: Annotated[bool, typer.Option("--watch", "-w", help="then watch it")] = False) -> None:
    """Run a finished job again, as a new job."""
    job = _call(lambda c: c.rerun(job_id, failed_only=failed_only))
    carried = [s.name for s in job.steps if s.carried_from]
    console.print(safe(f"submitted {job.job_id} (rerun of {job.rerun_of})"
                       + (f"; carried over: {', '.join(carried)}" if carried else "")))
    if watch_:
        watch(job.job_id)


@app.command()
def cancel(job_id: JobRef) -> None:
    """Cancel a running job."""

    console.print(job_view(_call(lambda c: c.cancel(job_id))))


if __name__ == "__main__":
    app()
