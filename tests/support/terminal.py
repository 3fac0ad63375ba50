"""A pseudo-terminal with a program in the foreground, as a person's shell runs it: what
it printed, keys typed to it (Ctrl-C is b"\\x03"), its exit code."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import termios
import threading

from tests.procs import REPO
from tests.support import until

__all__ = ["Console"]

DEADLINE = 120


class Console:
    """A pseudo-terminal with a program in the foreground, as a person's shell runs it."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.pid = 0
        self.fd = -1
        self.status: int | None = None

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              size: tuple[int, int] = (40, 120)) -> Console:
        """Run ``argv`` in the repository on a ``size`` (rows, columns) terminal, with
        ``env`` as its whole environment (this one's by default)."""
        env = {k: v for k, v in (os.environ if env is None else env).items()
               if k != "PYTEST_CURRENT_TEST"}
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal, its group in front
            os.chdir(REPO)
            os.execvpe(argv[0], argv, env)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except OSError:
                return
            if not data:
                return
            self.out.extend(data)

    def read_text(self) -> str:
        return bytes(self.out).decode(errors="replace").replace("\r\n", "\n")

    def poll(self) -> int | None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait(self, timeout: float) -> int | None:
        until(lambda: self.poll() is not None, "the program's exit", timeout)
        return self.status

    def kill(self) -> None:
        if self.poll() is None:
            os.killpg(os.getpgid(self.pid), signal.SIGKILL)
            self.wait(DEADLINE)
