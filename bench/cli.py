"""The CLI keeping up: `stepwatch watch` on a terminal (a pty) following a job of 300 and
of 2,000 independent `true` steps, next to the job itself. Figures: how long after the job's
terminal event (as a plain gRPC watcher received it) the CLI exited, and the CPU the CLI
used next to the server's over the job."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator

from .cpu import cpu_s
from .steps import TERMINAL, independent


def _drain(fd: int) -> None:
    """Read the pty as a terminal would, so the CLI never blocks on its output."""
    while True:
        try:
            if not os.read(fd, 1 << 16):
                return
        except OSError:
            return


def measure(ws: Path, steps: int) -> tuple[float, float, float, float]:
    """(job seconds, CLI lag after the terminal event, CLI CPU s, server CPU s)."""
    orch = Orchestrator(f"sqlite:///{ws / 'cli.db'}", 0, None, ws,
                        extra=["--max-steps", str(max(steps, 1000))])
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            server_cpu = cpu_s(orch.popen.pid)
            begun = time.perf_counter()
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=independent(steps)),
                                 timeout=120).job
            primary, replica = os.openpty()
            os.set_blocking(primary, True)
            cli = subprocess.Popen(
                [sys.executable, "-m", "stepwatch.cli", "--target", orch.target, "watch",
                 job.job_id], stdin=replica, stdout=replica, stderr=replica,
                env={**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"})
            os.close(replica)
            reader = threading.Thread(target=_drain, args=(primary,), daemon=True)
            reader.start()
            ended = None
            for r in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=1800):
                if (r.WhichOneof("kind") == "event" and r.event.HasField("job_changed")
                        and r.event.job_changed.status in TERMINAL):
                    ended = time.perf_counter()
                    break
            assert ended is not None
            server_cpu = cpu_s(orch.popen.pid) - server_cpu
            _, status, usage = os.wait4(cli.pid, 0)
            exited = time.perf_counter()
            cli.returncode = os.waitstatus_to_exitcode(status)
            os.close(primary)
            assert cli.returncode == 0, f"stepwatch watch exited {cli.returncode}"
            return (ended - begun, exited - ended, usage.ru_utime + usage.ru_stime, server_cpu)
    finally:
        orch.stop()


async def main(steps: int = 2000) -> list[str]:
    """A 300-step job (the issue's first finding) and a ``steps``-step one."""
    out = []
    for n in sorted({300, steps}):
        with tempfile.TemporaryDirectory() as d:
            took, lag, cli_cpu, server_cpu = await asyncio.to_thread(measure, Path(d), n)
        out.append(f"`stepwatch watch` on a pty, a {n:,}-step job: the job took {took:.1f} s; "
                   f"the CLI exited {lag:.2f} s after its terminal event (goal <= 1 s); CLI CPU "
                   f"{cli_cpu:.1f} s, server CPU {server_cpu:.1f} s: ratio "
                   f"{cli_cpu / server_cpu:.2f} (goal < 1)")
    return out


if __name__ == "__main__":
    print("\n".join(asyncio.run(main())))
