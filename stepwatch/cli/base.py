"""What every command shares: the app, the connection options, errors and exit codes.

Errors are one line on stderr and exit 2 (a usage error, an error from the server, an
orchestrator that cannot be reached); ``watch`` and ``logs --follow`` exit with
``EXIT_CODES`` so a script can tell how the job (or the attempt) ended.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import grpc
import typer
from rich.text import Text

from stepwatch.cli.output import Output
from stepwatch.client import Client, Credentials, default_target
from stepwatch.errors import StepwatchError
from stepwatch.sanitize import printable, safe
from stepwatch.v1 import orchestrator_pb2 as pb

__all__ = ["EXIT_CODES", "JSON", "MIN_PREFIX", "JobRef", "app", "call", "connect", "fail", "run",
           "state"]

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, help="Stepwatch: run jobs and watch every step's true status.")

# How a job (watch) or a step attempt (logs --follow) ended, for scripts.
EXIT_CODES = {pb.JOB_STATUS_COMPLETED: 0, pb.JOB_STATUS_FAILED: 1,
              pb.JOB_STATUS_COMPLETED_WITH_FAILURES: 3, pb.JOB_STATUS_CANCELLED: 4}
STEP_EXIT_CODES = {pb.STEP_STATUS_COMPLETED: 0, pb.STEP_STATUS_FAILED: 1,
                   pb.STEP_STATUS_CANCELLED: 4, pb.STEP_STATUS_SKIPPED: 4}
NOT_TERMINAL = 5  # the stream ended before the outcome was known

MIN_PREFIX = 8  # the server resolves a job id prefix of this many characters or more


class State:
    target: str = ""
    credentials: Credentials = Credentials()
    out: Output = Output()


state = State()


def connect() -> Client:
    return Client(state.target, credentials=state.credentials)


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
        state.out.note("warning: --token on the command line is visible to every user of "
                       "this machine (ps); use --token-file or STEPWATCH_TOKEN_FILE", "yellow")
    try:
        state.credentials = Credentials.from_env(token, token_file, tls_ca, tls_cert, tls_key)
    except OSError as exc:
        fail(f"cannot read the token file: {exc}")


def run(coro: Coroutine[Any, Any, T], where: str | None = None) -> T:
    """Run a command's coroutine; a server's error is one line, then its field violations,
    each once (``where``: the file they are in, printed before each as a compiler does)."""
    try:
        return asyncio.run(coro)
    except StepwatchError as err:
        errors = state.out.errors
        if err.code == grpc.StatusCode.UNAVAILABLE:
            errors.print(Text.assemble(("error", "bold red"), ": cannot reach the orchestrator "
                                       f"at {printable(state.target)} (", safe(err.message), ")"))
        elif err.violations:
            n = len(err.violations)
            # A server definition names its file: its errors are printed as that file's.
            named = re.match(r"invalid definition file (\S+?):", err.message)
            where = where or (named.group(1) if named else None)
            errors.print(Text.assemble(("error", "bold red"), f" ({err.code.name}): ",
                                       safe(_headline(err.message, err.violations[0].field)),
                                       f" ({n} error{'s' if n != 1 else ''})"))
            for v in err.violations:
                field = "" if v.field in WHOLE_FILE else f"{v.field}: "
                errors.print(safe(f"{where}: {field}{v.description}" if where else
                                  f"  {field}{v.description}"))
        else:
            errors.print(Text.assemble(("error", "bold red"), f" ({err.code.name}): ",
                                       safe(err.message)))
        raise typer.Exit(2) from None


WHOLE_FILE = frozenset({"definition_toml"})  # a violation of the file itself (its syntax, size)


def _headline(message: str, first_field: str) -> str:
    """The message without the violations it lists (they are printed under it, each once)."""
    at = message.find(f"{first_field}: ")
    return message[:at].rstrip(": ") if at > 0 else message.split(";", 1)[0]


def fail(message: str) -> NoReturn:
    """A usage error: one clear line, exit 2."""
    state.out.errors.print(Text.assemble(("error", "bold red"), ": ", safe(message)))
    raise typer.Exit(2)


def call(method: Callable[[Client], Awaitable[T]]) -> T:
    """One request to the server, with errors printed as ``run`` prints them."""

    async def go() -> T:
        async with connect() as client:
            return await method(client)

    return run(go())


def _job_ref(value: str | None) -> str | None:
    """A job id or a prefix the server can resolve; a shorter one can never match."""
    if value is not None and len(value) < MIN_PREFIX:
        fail(f"job id prefix {value!r} is too short: give {MIN_PREFIX} or more characters "
             "(`stepwatch jobs` lists the ids)")
    return value


JobRef = Annotated[str, typer.Argument(callback=_job_ref,
                                       help="a job id, or a unique prefix of 8+ characters")]
OptionalJobRef = Annotated[str | None, typer.Argument(
    callback=_job_ref, help="a job id, or a unique prefix of 8+ characters")]
JSON = Annotated[bool, typer.Option("--json", help="JSON output (the proto's JSON mapping)")]
