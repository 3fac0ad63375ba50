"""shell: one child per command, run by /bin/sh in the workspace.

A command never outlives its child: it runs in its own process group, under
``setpriv --pdeathsig KILL`` (so it dies with the orchestrator, however the
orchestrator dies), and when the shell exits, whatever it left in its group
(``sleep 30 &``) is killed and its pipes are not waited on. Output is read as
a stream into a bounded tail: a command printing gigabytes costs kilobytes.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import pwd
import shutil
import signal
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..reaper import UNKNOWN_EXIT
from ..sandbox import NONE as NO_SANDBOX
from ..sandbox import Sandbox
from ..spawn import spawn
from ..statuses import LogStream
from .base import (
    CURRENT_CHILD,
    Child,
    DocumentPut,
    StepContext,
    StepFailed,
    StepType,
    check_known,
    string_list,
)

STDERR_TAIL = 4096  # bytes of stderr kept for the failure message
SHOWN_TAIL = 400  # characters of it shown there
PIPE_GRACE_S = 0.2  # after the shell exits, how long its pipes may still be read
REAP_WAIT_S = 5.0  # after a kill, how long the child watcher gets to reap the command
PARTIAL_LINE = 8192  # a line longer than this goes to the log in pieces
RESULT_CHARS = 1000
# The shell's own codes for "cannot execute" and "command not found": the step is
# misconfigured, so running its other commands would not help.
STEP_BROKEN_CODES = {126: "command cannot be executed", 127: "command not found"}
SETPRIV = shutil.which("setpriv")


class CommandFailed(Exception):
    pass


class Tail:
    """The last ``limit`` bytes of a stream, and how many bytes went by."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._chunks: deque[bytes] = deque()
        self._kept = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self._chunks.append(data)
        self._kept += len(data)
        while self._kept - len(self._chunks[0]) >= self.limit:
            self._kept -= len(self._chunks.popleft())

    def text(self, chars: int) -> str:
        return b"".join(self._chunks)[-self.limit:].decode("utf-8", "replace").strip()[-chars:]


def command_argv(command: str, run_as: str | None = None, sandbox: Sandbox = NO_SANDBOX,
                 workspace: Path | None = None) -> list[str]:
    """``/bin/sh -c command``, in the sandbox (its own namespaces: the whole tree dies with
    it), as ``run_as`` when given, and with the death signal of its parent set."""
    shell = ["/bin/sh", "-c", command]
    if sandbox.enabled:
        shell = sandbox.wrap(shell, workspace or Path.cwd())
    if run_as is not None:
        if not SETPRIV:
            raise StepFailed("--shell-user needs setpriv (util-linux) on this machine")
        user = _user(run_as)
        return [SETPRIV, "--pdeathsig", "KILL", f"--reuid={user.pw_uid}",
                f"--regid={user.pw_gid}", "--init-groups", "--", *shell]
    if sandbox.enabled:
        return shell  # bwrap --die-with-parent sets the death signal itself: one exec less
    return [SETPRIV, "--pdeathsig", "KILL", "--", *shell] if SETPRIV else shell


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise StepFailed(f"--shell-user {name!r}: no such user on this machine") from None


def command_env(ctx: StepContext) -> dict[str, str]:
    """The minimal environment of a command: the allowed names from the server's, the
    markers, and for another user that user's HOME, USER and LOGNAME."""
    env = {k: os.environ[k] for k in ctx.env_allow if k in os.environ}
    if ctx.run_as is not None:
        user = _user(ctx.run_as)
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return {**env, **ctx.env}


class Shell(StepType):
    name = "shell"

    def validate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        check_known(options, {"commands"}, self.name)
        return {"commands": string_list(options, "commands", required=True)}

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        return [Child(key=cmd) for cmd in ctx.options["commands"]]

    async def run_child(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        tail = Tail(STDERR_TAIL)
        out = _Output(ctx, CURRENT_CHILD.get())
        # The protocol API, not Process.wait(): that one also waits for the pipes to close,
        # which a background process (`sleep 30 &`) can hold open long after the shell exits.
        # In a session (process group) of its own, so a stop kills the whole tree; forked
        # off the loop's thread (spawn.py).
        spawning = asyncio.ensure_future(spawn(
            lambda: _Command(tail, out),
            command_argv(child.key, ctx.run_as, ctx.sandbox, ctx.workspace),
            cwd=ctx.workspace, env=command_env(ctx)))
        try:
            # Shielded: a cancel mid-spawn would make asyncio close the new transport, which
            # polls (reaps) the process behind the child watcher's back.
            transport, command = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                transport, command = await spawning
                await _stop(transport, command)
            raise
        pgid = transport.get_pid()
        try:
            await command.exited
        except BaseException:
            await _stop(transport, command)
            raise
        code = transport.get_returncode()
        if code == UNKNOWN_EXIT:
            raise CommandFailed("its exit status could not be read (another process reaped it); "
                                "it is not known whether it succeeded")
        if not ctx.sandbox.enabled:
            # What it left behind in its group ends with it. (In the sandbox the kernel ended
            # them all with bwrap; there the group is empty now and its number may already be
            # another new command's, which a kill here would hit.)
            _kill_group(pgid)
        if not command.closed.done():  # usually the pipes ended with it: no timer then
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(command.closed), PIPE_GRACE_S)
        transport.close()
        out.close()
        if out.last_line:
            ctx.result(out.last_line)
        if code in STEP_BROKEN_CODES:
            shown = tail.text(SHOWN_TAIL)
            raise StepFailed(f"{STEP_BROKEN_CODES[code]} (exit code {code}) "
                             f"in {child.key!r}" + (f": {shown}" if shown else ""))
        if code != 0:
            shown = tail.text(SHOWN_TAIL)
            raise CommandFailed(f"exit code {code}" + (f": {shown}" if shown else ""))
        return []


async def _stop(transport: asyncio.SubprocessTransport, command: _Command) -> None:
    """Kill a command's group, wait (bounded) for the child watcher to reap it, then close:
    closing first would make asyncio poll (reap) it itself, and its status would be lost."""
    _kill_group(transport.get_pid())
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(command.exited), REAP_WAIT_S)
    transport.close()


class _Output:
    """A command's stdout and stderr as whole lines into the step's log (the sink bounds it)."""

    def __init__(self, ctx: StepContext, child: int | None) -> None:
        self._ctx = ctx
        self._child = child
        self._decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in (1, 2)}
        self._partial = {1: "", 2: ""}
        self.last_line = ""  # the child's result: its last non-empty line of stdout

    def add(self, fd: int, data: bytes) -> None:
        text = self._partial[fd] + self._decoders[fd].decode(data)
        cut = text.rfind("\n") + 1
        if cut == 0 and len(text) < PARTIAL_LINE:
            self._partial[fd] = text  # wait for the end of the line
            return
        whole, self._partial[fd] = (text[:cut], text[cut:]) if cut else (text, "")
        self._emit(fd, whole)

    def close(self) -> None:
        for fd in (1, 2):
            rest = self._partial[fd] + self._decoders[fd].decode(b"", final=True)
            self._partial[fd] = ""
            if rest:
                self._emit(fd, rest + "\n")

    def _emit(self, fd: int, text: str) -> None:
        if self._ctx.sink is not None:
            self._ctx.sink.write(self._child, LogStream.STDOUT if fd == 1 else LogStream.STDERR,
                                 text, len(text.encode()))
        if fd == 1:
            for line in reversed(text.splitlines()):
                if line.strip():
                    self.last_line = line.strip()[-RESULT_CHARS:]
                    break


class _Command(asyncio.SubprocessProtocol):
    """Output into the log and a bounded tail; ``exited`` when the shell exits, ``closed`` when
    its pipes do."""

    def __init__(self, tail: Tail, out: _Output) -> None:
        loop = asyncio.get_running_loop()
        self.tail = tail
        self.out = out
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        if fd == 2:
            self.tail.add(bytes(data))
        self.out.add(fd, bytes(data))

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
