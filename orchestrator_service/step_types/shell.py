"""shell: one child per command, run by /bin/sh in the workspace."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Child, DocumentPut, StepContext, StepFailed, StepType, check_known, string_list

STDERR_TAIL = 400
# The shell's own codes for "cannot execute" and "command not found": the step is
# misconfigured, so running its other commands would not help.
STEP_BROKEN_CODES = {126: "command cannot be executed", 127: "command not found"}


class CommandFailed(Exception):
    pass


class Shell(StepType):
    name = "shell"

    def validate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        check_known(options, {"commands"}, self.name)
        return {"commands": string_list(options, "commands", required=True)}

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        return [Child(key=cmd) for cmd in ctx.options["commands"]]

    async def run_child(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        proc = await asyncio.create_subprocess_shell(
            child.key,
            cwd=ctx.workspace,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a stop kills the whole tree
        )
        try:
            _, stderr = await proc.communicate()
        except BaseException:
            await _kill_group(proc)
            raise
        if proc.returncode in STEP_BROKEN_CODES:
            tail = stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
            raise StepFailed(f"{STEP_BROKEN_CODES[proc.returncode]} (exit code {proc.returncode}) "
                             f"in {child.key!r}" + (f": {tail}" if tail else ""))
        if proc.returncode != 0:
            tail = stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
            raise CommandFailed(f"exit code {proc.returncode}" + (f": {tail}" if tail else ""))
        return []


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await asyncio.shield(proc.wait())
