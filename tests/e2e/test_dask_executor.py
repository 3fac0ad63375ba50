"""Children on a real Dask cluster, through a real orchestrator process and real gRPC."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.dask_cluster import DaskCluster
from tests.procs import Orchestrator, free_port
from tests.support import TERMINAL, until
from tests.support import finish_at as finish
from tests.support import submit_at as submit

DEADLINE = 60


@pytest.fixture
def own_cluster() -> Iterator[DaskCluster]:
    """A cluster of its own, for a test that kills one of its workers."""
    cluster = DaskCluster()
    yield cluster
    cluster.stop()


def on_dask(tmp_path: Path, scheduler: str, *extra: str) -> Orchestrator:
    return Orchestrator(f"sqlite:///{tmp_path / 'd.db'}", workspace=tmp_path,
                        extra=["--executor", "dask", "--dask-scheduler", scheduler, *extra])


def processes_with(marker: str) -> list[tuple[int, int]]:
    """(pid, ppid) of every process whose command line holds the marker."""
    out = subprocess.run(["ps", "-eww", "-o", "pid=,ppid=,args="], capture_output=True,
                         text=True).stdout
    # The sandbox's bwrap processes carry the command in their arguments: the command is the
    # process inside them.
    return [(int(line.split()[0]), int(line.split()[1])) for line in out.splitlines()
            if marker in line and "ps -eww" not in line
            and not line.split()[2].endswith("bwrap")]


def ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        chain.append(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return chain


def test_children_run_in_worker_processes_with_documents_and_logs(
        dask_cluster: DaskCluster, tmp_path: Path) -> None:
    # Unconfined: a child reads its own ancestry in /proc, which the sandbox's PID namespace
    # hides by design (the other tests here find sandboxed children from outside).
    orch = on_dask(tmp_path, dask_cluster.address, "--sandbox", "none")
    try:
        # Each child records its process's ancestry: a worker's, never the orchestrator's.
        chain = ('p=$$; while [ $p -gt 1 ]; do echo $p; '
                 "p=$(awk '/^PPid/{print $2}' /proc/$p/status); done")
        cmds = ", ".join(f'"{chain} > {tmp_path}/chain{i}; echo child {i} says hi"'
                         for i in range(12))
        for i in range(30):
            (tmp_path / "src").mkdir(exist_ok=True)
            (tmp_path / "src" / f"f{i}.txt").write_text("word " * (i + 1))
        job = finish(orch.target, submit(orch.target, (
            'name = "cluster"\n'
            f'[steps.cmds]\ntype = "shell"\nconcurrency = 6\ncommands = [{cmds}]\n'
            '[steps.scan]\ntype = "scan_files"\nroot = "src"\ninclude = ["*.txt"]\n'
            '[steps.sum]\ntype = "summarize"\ndepends = ["scan"]\n')).job_id)
        assert job.status == pb.JOB_STATUS_COMPLETED, job
        by = {s.name: s for s in job.steps}
        assert by["cmds"].children.completed == 12
        assert by["scan"].document_count == 30 and by["sum"].children.completed == 30
        workers = dask_cluster.worker_pids()
        for i in range(12):
            pids = {int(p) for p in (tmp_path / f"chain{i}").read_text().split()}
            assert orch.popen.pid not in pids
            assert pids & workers, f"child {i} ran outside the workers: {pids}"
        with grpc.insecure_channel(orch.target) as ch:
            text = "".join(r.chunk.text for r in pb_grpc.OrchestratorServiceStub(ch).WatchLogs(
                pb.WatchLogsRequest(job_id=job.job_id, step="cmds"), timeout=DEADLINE)
                if r.WhichOneof("kind") == "chunk")
        assert all(f"child {i} says hi" in text for i in range(12))
    finally:
        orch.stop()


@pytest.mark.serial  # timed: within 2 s: run alone
def test_cancel_kills_a_child_on_a_worker_within_2_s(dask_cluster: DaskCluster,
                                                      tmp_path: Path) -> None:
    orch = on_dask(tmp_path, dask_cluster.address)
    marker = f"sw-{uuid.uuid4().hex[:12]}"
    try:
        job = submit(orch.target, f'name = "c"\n[steps.s]\ntype = "shell"\n'
                                  f'commands = ["sleep 30; echo {marker}"]\n')
        until(lambda: processes_with(marker), "the child started on a worker")
        [(pid, _)] = processes_with(marker)
        assert orch.popen.pid not in ancestors(pid)
        assert set(ancestors(pid)) & dask_cluster.worker_pids()
        asked = time.monotonic()
        with grpc.insecure_channel(orch.target) as ch:
            pb_grpc.OrchestratorServiceStub(ch).CancelJob(pb.CancelJobRequest(job_id=job.job_id),
                                                          timeout=DEADLINE)
        until(lambda: not processes_with(marker), "the child killed",
              timeout=max(0.0, 2.0 - (time.monotonic() - asked)))
        print(f"\nchild on the worker gone {time.monotonic() - asked:.2f} s after CancelJob")
        final = finish(orch.target, job.job_id)
        assert final.status == pb.JOB_STATUS_CANCELLED
        assert final.steps[0].status == pb.STEP_STATUS_CANCELLED
    finally:
        orch.stop()


def test_a_killed_worker_fails_its_children_with_its_name(own_cluster: DaskCluster,
                                                           tmp_path: Path) -> None:
    orch = on_dask(tmp_path, own_cluster.address)
    marker = f"sw-{uuid.uuid4().hex[:12]}"
    try:
        cmds = ", ".join(f'"sleep 4; echo {marker}-{i}"' for i in range(4))
        job = submit(orch.target, (
            'name = "k"\n[policy]\non_step_failure = "continue"\n'
            '[steps.s]\ntype = "shell"\nconcurrency = 4\nmax_child_failures = 10\n'
            f'commands = [{cmds}]\n'))
        until(lambda: len(processes_with(marker)) == 4, "all four children started")
        # Which worker process (the nanny's child) runs each child.
        nannies = {w.popen.pid for w in own_cluster.workers}
        runs_on = {}
        for pid, _ in processes_with(marker):
            chain = ancestors(pid)
            i = int(Path(f"/proc/{pid}/cmdline").read_text().rsplit("-", 1)[1].strip("\0"))
            runs_on[i] = next(p for p, parent in zip(chain, chain[1:], strict=False)
                              if parent in nannies)
        victim = runs_on[0]
        os.kill(victim, signal.SIGKILL)  # like a lost machine
        final = finish(orch.target, job.job_id)
        assert final.status in TERMINAL
        lost = {i for i, w in runs_on.items() if w == victim}
        with grpc.insecure_channel(orch.target) as ch:
            children = pb_grpc.OrchestratorServiceStub(ch).ListChildren(
                pb.ListChildrenRequest(job_id=job.job_id, step="s"), timeout=DEADLINE).children
        for c in children:
            if c.index in lost:
                assert c.status == pb.CHILD_STATUS_FAILED, c
                assert "worker tcp://127.0.0.1:" in c.error.message and "died" in c.error.message
            else:
                assert c.status == pb.CHILD_STATUS_COMPLETED, c
        assert final.steps[0].children.failed == len(lost) >= 1
        until(lambda: not processes_with(marker), "no child left behind", timeout=10)
    finally:
        orch.stop()


def test_a_scheduler_that_is_down_fails_the_attempt_naming_it(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    orch = on_dask(tmp_path, address)
    try:
        job = finish(orch.target, submit(
            orch.target, 'name = "d"\n[steps.s]\ntype = "shell"\ncommands = ["true"]\n').job_id)
        assert job.status == pb.JOB_STATUS_FAILED
        failure = job.steps[0].failure
        assert failure.reason == pb.FAILURE_REASON_EXECUTION_FAILED
        assert address in failure.message and "scheduler" in failure.message
    finally:
        orch.stop()


def tree_command(marker: str) -> str:
    """A command that is a process tree: a background sleep and a foreground one."""
    return f"sh -c 'sleep 30 & sleep 30; echo {marker}' {marker}"


@pytest.mark.serial  # timed: within 2 s: run alone
def test_all_workers_killed_none_of_the_batchs_commands_outlive_them(
        own_cluster: DaskCluster, tmp_path: Path) -> None:
    orch = on_dask(tmp_path, own_cluster.address)
    marker = f"sw-{uuid.uuid4().hex[:12]}"
    try:
        cmds = ", ".join(f'"{tree_command(marker)}"' for _ in range(4))
        submit(orch.target, f'name = "w"\n[steps.s]\ntype = "shell"\nconcurrency = 4\n'
                            f'commands = [{cmds}]\n')
        until(lambda: len(processes_with(marker)) >= 8, "4 commands of 2 processes each")
        for pid in own_cluster.worker_pids():  # every worker and nanny, as lost machines
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        took = until(lambda: not processes_with(marker), "no command alive", timeout=2.0)
        print(f"\nevery command gone {took:.2f} s after all workers were killed")
        assert time.monotonic() - killed <= 2.0
    finally:
        orch.stop()


def test_a_killed_scheduler_fails_the_attempt_naming_it_and_the_next_runs_after_backoff(
        own_cluster: DaskCluster, tmp_path: Path) -> None:
    orch = on_dask(tmp_path, own_cluster.address)
    marker = f"sw-{uuid.uuid4().hex[:12]}"
    done = tmp_path / "done"
    try:
        job = submit(orch.target, (
            'name = "sched"\n[steps.s]\ntype = "shell"\nmax_attempts = 6\n'
            f'commands = ["if [ $STEPWATCH_ATTEMPT = 1 ]; then sleep 30; fi; '
            f'echo $STEPWATCH_ATTEMPT $(date +%s%N) >> {done}; : {marker}"]\n'))
        until(lambda: processes_with(marker), "attempt 1 running on a worker")
        own_cluster.scheduler.stop(signal.SIGKILL)
        lost = time.time_ns()
        until(lambda: not processes_with(marker), "attempt 1's command stopped", timeout=10)
        own_cluster.start_scheduler()
        for w in own_cluster.workers:
            w.stop(signal.SIGKILL)
        own_cluster.workers.clear()
        own_cluster.start_workers(2)
        final = finish(orch.target, job.job_id)
        assert final.status == pb.JOB_STATUS_COMPLETED, final
        step = final.steps[0]
        assert step.attempt >= 2
        with grpc.insecure_channel(orch.target) as ch:
            log = [m.event.step_changed for m in pb_grpc.OrchestratorServiceStub(ch).WatchJob(
                pb.WatchJobRequest(job_id=job.job_id, after_seq=1), timeout=DEADLINE)
                if m.WhichOneof("kind") == "event" and m.event.HasField("step_changed")]
        failures = [e.previous_attempt_failure for e in log
                    if e.attempt > 1 and e.status == pb.STEP_STATUS_RUNNING]
        assert failures and all(f.reason == pb.FAILURE_REASON_EXECUTION_FAILED
                                for f in failures), failures
        first = failures[0].message
        assert own_cluster.address in first and "scheduler" in first, first
        # Attempts after a cluster fault wait (1 s, 2 s, ...): never at once.
        starts = sorted({(e.attempt, e.started_at.ToNanoseconds()) for e in log
                         if e.attempt > 1 and e.status == pb.STEP_STATUS_RUNNING})
        print(f"\nattempts after the scheduler's loss: {[a for a, _ in starts]}")
        [ran] = done.read_text().splitlines()
        assert int(ran.split()[1]) - lost >= 1e9, "the next attempt ran with no backoff"
    finally:
        orch.stop()
