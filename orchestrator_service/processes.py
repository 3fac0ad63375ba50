"""The commands a step starts, found and stopped wherever they went.

Every command carries marker variables in its environment (``STEPWATCH_OWNER``:
which database's orchestrator started it; ``STEPWATCH_STEP`` and
``STEPWATCH_ATTEMPT``). Markers survive what process groups do not: a command
that calls ``setsid`` leaves its group, but keeps its environment. So a new
owner of a database finds, by marker, every command a dead predecessor left
running, and kills it before it decides anything about those steps.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator

__all__ = ["kill_marked", "marked", "owner_key"]

OWNER = "STEPWATCH_OWNER"
STEP = "STEPWATCH_STEP"


def owner_key(db_identity: str) -> str:
    """A short stable key for one database (its path or URL, without secrets)."""
    return hashlib.sha256(db_identity.encode()).hexdigest()[:20]


def marked(owner: str | None, step_id: str | None = None) -> Iterator[int]:
    """Pids of live processes carrying the owner's marker and/or the step's (one at least)."""
    if owner is None and step_id is None:
        raise ValueError("marked() needs an owner or a step")
    want = [] if owner is None else [f"{OWNER}={owner}".encode()]
    if step_id is not None:
        want.append(f"{STEP}={step_id}".encode())
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if all(w in env for w in want):
            yield int(name)


def kill_marked(owner: str | None, step_id: str | None = None, deadline_s: float = 10.0) -> int:
    """SIGKILL every marked process and wait until none is left; returns how many were killed."""
    killed: set[int] = set()
    end = time.monotonic() + deadline_s
    while True:
        alive = [pid for pid in marked(owner, step_id) if not _zombie(pid)]
        if not alive:
            return len(killed)
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        if time.monotonic() > end:
            raise TimeoutError(f"processes {alive} did not die in {deadline_s:g} s")
        time.sleep(0.02)  # the kernel tears them down; look again


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True
