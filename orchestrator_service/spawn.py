"""Commands started off the event loop's thread.

``loop.subprocess_exec`` forks on the loop's thread, and while the machine is busy a
vfork'ed child takes milliseconds to reach exec, all of them a stall of the loop that
answers GetJob and feeds watchers (a watchdog found 174 of 180 stalls of 30 ms or more in
``Popen._execute_child``). Here the fork runs on a spawner thread (CPython drops the GIL
while the vfork'ed child execs, gh-104372), and the process is handed to asyncio's own
subprocess transport on the loop: the same pipes, protocol and child watcher (the one
reaper, reaper.py) as ``subprocess_exec``.

The spawner threads live as long as the process: a command's parent-death signal
(``setpriv --pdeathsig``, bwrap's ``--die-with-parent``) fires when the *thread* that
forked it ends, not the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from asyncio import unix_events
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["spawn"]

P = TypeVar("P", bound=asyncio.SubprocessProtocol)

# Two: one vfork waiting for its child's exec does not hold the next command back.
_SPAWNERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spawner")


class _Started(unix_events._UnixSubprocessTransport):  # type: ignore[name-defined,misc]
    """asyncio's subprocess transport around a process already started elsewhere."""

    def _start(self, args: Any, shell: Any, stdin: Any, stdout: Any, stderr: Any,
               bufsize: Any, started: subprocess.Popen[bytes], **kwargs: Any) -> None:
        self._proc = started


async def spawn(factory: Callable[[], P], argv: Sequence[str], *, cwd: Path | None,
                env: Mapping[str, str]) -> tuple[asyncio.SubprocessTransport, P]:
    """``argv`` in a session of its own, stdin from /dev/null, stdout and stderr piped to
    the protocol: what ``loop.subprocess_exec`` does with those arguments, forked on a
    spawner thread. A cancel after the fork still hands the process over (the caller owns
    it: shield the call, as for ``subprocess_exec``)."""
    loop = asyncio.get_running_loop()
    args = list(argv)
    fork = _SPAWNERS.submit(_fork, args, cwd, dict(env))
    try:
        popen = await asyncio.shield(asyncio.wrap_future(fork))
    except asyncio.CancelledError:
        # Cancelled while the thread forks: the process it makes has no owner. Ended from
        # the thread, so even a loop that has closed meanwhile leaves nothing running.
        fork.add_done_callback(_abandoned)
        raise
    protocol = factory()
    waiter = loop.create_future()
    transport = _Started(loop, protocol, args, False, subprocess.DEVNULL,
                         subprocess.PIPE, subprocess.PIPE, 0, waiter=waiter, started=popen)
    with asyncio.get_child_watcher() as watcher:
        # From here the watcher is its one reaper (nothing polls the Popen).
        watcher.add_child_handler(popen.pid, _exited, transport, loop)
    try:
        await waiter
    except BaseException:
        transport.close()
        await transport._wait()
        raise
    return transport, protocol


def _fork(argv: list[str], cwd: Path | None, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0, cwd=cwd, env=env,
                            start_new_session=True)


def _exited(pid: int, code: int, transport: _Started, loop: asyncio.AbstractEventLoop) -> None:
    # The pidfd watcher calls on the loop's thread (no wake-up of the loop needed), others
    # on their own. (The transport comes first: reaper.py reads a status taken elsewhere
    # from its Popen.)
    try:
        here = asyncio.get_running_loop() is loop
    except RuntimeError:
        here = False
    (loop.call_soon if here else loop.call_soon_threadsafe)(transport._process_exited, code)


def _abandoned(fork: Future[subprocess.Popen[bytes]]) -> None:
    """Kill a process nobody will watch, with its group, and reap it (on the spawner thread
    that made it)."""
    if fork.cancelled() or fork.exception() is not None:
        return
    popen = fork.result()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()
    for pipe in (popen.stdout, popen.stderr):
        if pipe is not None:
            pipe.close()
