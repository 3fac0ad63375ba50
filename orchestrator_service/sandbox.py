"""Where a `shell` command runs: a bubblewrap sandbox by default.

A command sees the system read-only (/usr, /etc, the library links), the machine's /tmp, a
/dev and /proc of its own, and the workspace read-write, and nothing else: not the
orchestrator's environment, files or database (those in the workspace or /tmp are masked), not
its processes (its own PID namespace, so no signal reaches the server), with no capabilities.
When bwrap dies (the orchestrator died, or the attempt ended and killed it), the kernel ends
every process of the sandbox's PID namespace: a command never outlives its attempt, however
it forked. Pure: this module only builds argument lists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NONE", "Sandbox", "SandboxUnavailable", "bwrap_path"]

# The system a command may use, read-only. Links (merged /usr) are recreated as links.
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


class SandboxUnavailable(Exception):
    """bwrap is missing or cannot make namespaces here."""


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@dataclass(frozen=True)
class Sandbox:
    """How commands are confined. ``kind`` "bwrap" (default) or "none" (opt-out, warned)."""

    kind: str = "bwrap"
    bwrap: str = "/usr/bin/bwrap"
    hidden: tuple[str, ...] = ()  # the server's own files: never visible to a command
    read_only: tuple[str, ...] = ()  # more paths a command may read (--sandbox-ro-bind)
    system: tuple[str, ...] = field(default=SYSTEM)

    @property
    def enabled(self) -> bool:
        return self.kind == "bwrap"

    def wrap(self, argv: Sequence[str], workspace: Path) -> list[str]:
        """``argv`` as it runs in the sandbox, with ``workspace`` as its folder."""
        if not self.enabled:
            return list(argv)
        ws = str(workspace)
        out = [self.bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--share-net",
               "--cap-drop", "ALL", "--hostname", "stepwatch-sandbox"]
        for path in self.system:
            if os.path.islink(path):
                out += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                out += ["--ro-bind", path, path]
        # /tmp is the machine's, as for any command (steps pass files through it); what of
        # the server lies there (a database, a token file) is masked below like elsewhere.
        out += ["--proc", "/proc", "--dev", "/dev", "--bind", "/tmp", "/tmp"]
        for path in self.read_only:
            out += ["--ro-bind-try", path, path]
        out += ["--bind", ws, ws]
        for path in self._masks(workspace):
            out += ["--tmpfs", path] if os.path.isdir(path) else ["--ro-bind", "/dev/null", path]
        out += ["--chdir", ws, "--setenv", "HOME", "/tmp", "--", *argv]
        return out

    def _masks(self, workspace: Path) -> list[str]:
        """The server's files that a bound folder would show: each is covered (a file by an
        empty one, a folder by an empty tmpfs). A file that does not exist when the command
        starts cannot be covered: the server lists its database's -wal/-shm files, which
        exist while it runs."""
        visible = [str(workspace), "/tmp", *self.read_only, *self.system]
        out = []
        for path in self.hidden:
            if os.path.lexists(path) and any(_beneath(path, top) for top in visible):
                out.append(path)
        return out


def _beneath(path: str, top: str) -> bool:
    top = top.rstrip("/") or "/"
    return path == top or path.startswith(top + "/")


NONE = Sandbox(kind="none")
