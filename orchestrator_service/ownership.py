"""Who may write a database: exactly one orchestrator process at a time.

What a process holds is its database dialect's choice (``store.dialect``): for SQLite an
OS lock (``flock``) on ``<db file>.lock``, held for the process's life; the kernel drops it
when the process dies, however it dies, so a crashed orchestrator never blocks its
successor. PostgreSQL: any number of replicas share the database; each job is owned through
its lease (leases.py, replicas.py), so there is nothing to hold for the whole database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass

__all__ = ["LOCK_SUFFIX", "AlreadyOwned", "Ownership", "lock_file"]


class AlreadyOwned(Exception):
    """Another live orchestrator holds the database."""


@dataclass
class Ownership:
    """Held until ``release`` (or the process's end)."""

    what: str
    _fd: int | None = None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


LOCK_SUFFIX = ".lock"


def lock_file(db_path: str) -> Ownership:
    lock_path = db_path + LOCK_SUFFIX
    # CLOEXEC: a command the orchestrator starts must not inherit (and keep) the lock.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        raise AlreadyOwned(
            f"another orchestrator{holder} is using the database {db_path} (it holds the lock "
            f"{lock_path}); stop it, or give this one its own --db-url") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return Ownership(db_path, _fd=fd)


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (pid {pid})"
    return ""
