"""Real processes for tests: start them, wait for their ready line with a deadline, stop them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"listening on ([\w.\-]+):(\d+)")


def kill_process_groups_matching(marker: str) -> None:
    """A SIGKILLed server cannot stop its children; a test cleans up after it."""
    out = subprocess.run(["ps", "-eww", "-o", "pgid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():  # no header with "pgid=,args="
        pgid, _, args = line.strip().partition(" ")
        if marker in args:
            try:
                os.killpg(int(pgid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process whose output is collected; ``wait_for`` waits on a line with a deadline."""

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        child_env = {**os.environ, **(env or {})}
        child_env.pop("PYTEST_CURRENT_TEST", None)  # a real process, not a test (NiceGUI checks it)
        self.popen = subprocess.Popen(
            self.args, cwd=cwd, env=child_env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if m := pattern.search(line):
                        return m
                seen = len(self.lines)
                if self.popen.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"{self.args} exited {self.popen.returncode}:\n{self.output}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.args} did not print {pattern.pattern!r}:\n{self.output}")
                self._cond.wait(min(left, 0.5))

    @property
    def output(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(5)
        return self.popen.returncode


class Orchestrator(Proc):
    def __init__(self, db_url: str, port: int = 0, jobs_dir: Path | None = None,
                 workspace: Path | None = None, heartbeat: float = 0.5,
                 extra: Sequence[str] = (), env: dict[str, str] | None = None,
                 prefix: Sequence[str] = ()) -> None:
        """``prefix``: what runs the server (e.g. ``unshare`` for a PID namespace of its own)."""
        if db_url.startswith("postgresql") and "--lease-seconds" not in extra:
            extra = [*extra, "--lease-seconds", "3"]  # a takeover in tests waits seconds, not 10
        args = [*prefix, sys.executable, "-m", "orchestrator_service", "--port", str(port),
                "--db-url", db_url, "--heartbeat-interval", str(heartbeat),
                "--jobs-dir", str(jobs_dir or REPO / "jobs"), "--workspace", str(workspace or REPO),
                *extra]
        super().__init__(args, cwd=REPO, env=env)
        m = self.wait_for(READY)
        self.port = int(m.group(2))
        self.target = f"127.0.0.1:{self.port}"


def run_job(target: str, timeout: float = 60.0, **source: str) -> pb.Job:
    """Submit a job (definition_name= or definition_toml=), follow its stream to the end, and
    return it as GetJob then answers: the one "run a job to its end" of tests and benches."""
    with grpc.insecure_channel(target) as ch:
        stub = pb_grpc.OrchestratorServiceStub(ch)
        job = stub.SubmitJob(pb.SubmitJobRequest(**source), timeout=timeout).job
        for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=timeout):
            pass
        return stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=timeout).job
