"""A real Dask cluster for tests: `dask scheduler` and `dask worker` processes on 127.0.0.1.

The scheduler runs with allowed-failures 0, as the README tells operators to: Dask must not
re-run a task whose worker died (the orchestrator records that as the children's failure)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.procs import REPO, Proc, free_port

DASK = str(Path(sys.executable).with_name("dask"))
SCHEDULER_ENV = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
WORKER_READY = re.compile(r"Registered to:|Starting established connection")


class DaskCluster:
    def __init__(self, workers: int = 2, threads: int = 2) -> None:
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.threads = threads
        self.workers: list[Proc] = []
        try:
            self.start_scheduler()
            self.start_workers(workers)
        except BaseException:
            self.stop()
            raise

    def start_scheduler(self) -> None:
        """A scheduler at the cluster's address (again, after a kill)."""
        self.scheduler = Proc([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                               "--no-dashboard"], cwd=REPO, env=SCHEDULER_ENV)
        self.scheduler.wait_for(re.compile(r"Scheduler at:"), timeout=60)

    def start_workers(self, n: int) -> None:
        new = [Proc([DASK, "worker", self.address, "--nworkers", "1", "--nthreads",
                     str(self.threads), "--no-dashboard", "--name", f"w{len(self.workers) + i}",
                     "--host", "127.0.0.1"], cwd=REPO) for i in range(n)]
        self.workers += new
        for w in new:
            w.wait_for(WORKER_READY, timeout=60)

    def worker_pids(self) -> set[int]:
        """The worker processes' pids (the nanny and the worker it starts)."""
        pids = set()
        for w in self.workers:
            pids.add(w.popen.pid)
            pids |= _descendants(w.popen.pid)
        return pids

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.scheduler.stop()


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for t in Path(f"/proc/{p}/task").iterdir()
                    for c in (t / "children").read_text().split()]
        except OSError:
            continue
        found |= set(kids)
        todo += kids
    return found
