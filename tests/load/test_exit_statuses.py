"""Exit statuses are never guessed: 5,000 `exit 0` commands, while other attempts around them
are cancelled and timed out (their commands killed), are all recorded COMPLETED.

asyncio reports 255 for a process whose status another reaper read first; a command that
succeeded would then be a false failure. A real server process (its pidfd reaper, the
sandbox), a real SQLite file: the step's counts, its child rows and the server's log say
no status was lost.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator

# Run alone (make test's second pass): it is the load.
pytestmark = pytest.mark.serial

COMMANDS = 5000
DEADLINE = 600


def _disturb(stub: pb_grpc.OrchestratorServiceStub, stop: threading.Event,
             counts: dict[str, int]) -> None:
    """Attempts that end by a kill, over and over: cancelled while their commands start,
    and timed out while their commands (trees of two processes) run."""
    trees = ", ".join(['"sh -c \'sleep 5 & sleep 5\'"'] * 6)
    quick = ", ".join(['"exit 0"'] * 6)
    while not stop.is_set():
        cancelled = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
            f'name = "cancelled"\n[steps.s]\ntype = "shell"\nconcurrency = 6\n'
            f'commands = [{trees}, {quick}]\n')), timeout=60).job
        timed_out = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
            f'name = "timed_out"\n[steps.s]\ntype = "shell"\nconcurrency = 6\n'
            f'timeout = 0.3\ncommands = [{quick}, {trees}]\n')), timeout=60).job
        time.sleep(0.05 * (counts["cancelled"] % 5))  # vary where the cancel lands
        stub.CancelJob(pb.CancelJobRequest(job_id=cancelled.job_id), timeout=60)
        counts["cancelled"] += 1
        for _ in stub.WatchJob(pb.WatchJobRequest(job_id=timed_out.job_id), timeout=60):
            pass
        counts["timed_out"] += 1


def test_5000_exit_0_commands_among_killed_attempts_none_recorded_failed(tmp_path: Path) -> None:
    server = Orchestrator(f"sqlite:///{tmp_path / 'exit.db'}", workspace=tmp_path)
    stop = threading.Event()
    counts = {"cancelled": 0, "timed_out": 0}
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            commands = ", ".join(['"exit 0"'] * COMMANDS)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                f'name = "exits"\n[steps.s]\ntype = "shell"\nconcurrency = 32\n'
                f'commands = [{commands}]\n')), timeout=60).job
            disturber = threading.Thread(target=_disturb, args=(stub, stop, counts), daemon=True)
            disturber.start()
            for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE):
                pass
            stop.set()
            disturber.join(120)
            final = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=60).job
    finally:
        stop.set()
        server.stop()
    print(f"\n{COMMANDS} commands; {counts['cancelled']} attempts cancelled and "
          f"{counts['timed_out']} timed out around them")
    assert counts["cancelled"] >= 3 and counts["timed_out"] >= 3, counts
    step = final.steps[0]
    assert final.status == pb.JOB_STATUS_COMPLETED, step.failure
    assert (step.children.completed, step.children.failed) == (COMMANDS, 0)
    out = server.output
    assert "exit status already read" not in out
    assert "exit status was read by another reaper" not in out
