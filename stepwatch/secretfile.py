"""Reading a file that grants access (a token file, the UI's users): refused when anyone but
its owner may write it, since whoever can write it can make themselves admin."""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["UnsafeFile", "read_secret_file", "read_token_file"]

MAX_BYTES = 4 << 20  # an access file is small; a huge one is a mistake or an attack


class UnsafeFile(ValueError):
    """The file is group- or world-writable (or not a regular file)."""


def read_secret_file(path: Path) -> str:
    """The file's text, checked on the descriptor that is read (no check-then-open race)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{path} is not a regular file")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafeFile(f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}): "
                             f"anyone who can write it can grant themselves access; "
                             f"chmod go-w {path}")
        if st.st_size > MAX_BYTES:
            raise UnsafeFile(f"{path} is over {MAX_BYTES} bytes")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_BYTES + 1).decode("utf-8")
    finally:
        os.close(fd)


def read_token_file(path: Path) -> str:
    """A client's token from a file (one line; surrounding whitespace dropped)."""
    return read_secret_file(path).strip()
