"""The one reaper of the commands' processes: asyncio's pidfd child watcher, never guessing.

asyncio's watcher reports 255 for a process that something else reaped first, which is a
false failure for a command that exited 0. Here each command has exactly one reaper (this
watcher; the shell step never lets asyncio's transport poll a live process), and if the
status was taken anyway, it is read from where the taker left it (the ``Popen`` that polled
it) or reported as ``UNKNOWN_EXIT``, never as an exit code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from typing import Any

__all__ = ["UNKNOWN_EXIT", "Reaper", "install"]

log = logging.getLogger(__name__)
UNKNOWN_EXIT = -(1 << 16)  # no process exits with this: its status could not be read


class Reaper(asyncio.PidfdChildWatcher):
    def _do_wait(self, pid: int) -> None:
        pidfd, callback, args = self._callbacks.pop(pid)  # type: ignore[attr-defined]
        self._loop._remove_reader(pidfd)  # type: ignore[attr-defined]
        try:
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = _taken(args)
        os.close(pidfd)
        callback(pid, code, *args)


def _taken(args: tuple[Any, ...]) -> int:
    """The status of a process reaped elsewhere: asyncio's Popen keeps what its poll read."""
    proc = getattr(args[0], "_proc", None) if args else None
    code = getattr(proc, "returncode", None)
    if isinstance(code, int):
        return code
    log.error("a command's exit status was read by another reaper and is lost: "
              "reported as unknown, not as a failure code")
    return UNKNOWN_EXIT


def install() -> bool:
    """Commands end through pidfds on the event loop, not a waitpid thread per command (the
    default): at hundreds of commands a second the threads cost the loop that serves
    watchers. False where the kernel has no pidfds (the default watcher stays)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))  # the kernel supports it (Linux 5.3+)
    except OSError:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the API goes in 3.12; 3.11 has it
        watcher = Reaper()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
    return True
