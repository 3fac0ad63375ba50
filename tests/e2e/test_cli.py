"""`stepwatch` against a real server: codebase_assess ends COMPLETED_WITH_FAILURES,
its filter step FAILED and shown red."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import REPO, Orchestrator

STEPWATCH = str(Path(sys.executable).parent / "stepwatch")
BOLD_RED = "\x1b[1;31m"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrator]:
    proc = Orchestrator(f"sqlite:///{tmp_path_factory.mktemp('cli') / 'cli.db'}")
    yield proc
    proc.stop()


def run_cli(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPWATCH_TARGET": target, "FORCE_COLOR": "1", "COLUMNS": "200",
           "TERM": "xterm-256color"}
    return subprocess.run([STEPWATCH, *args], capture_output=True, text=True, env=env, timeout=120,
                          cwd=REPO)


def test_codebase_assess_through_the_cli(server: Orchestrator) -> None:
    out = run_cli(server.target, "submit", "codebase_assess", "--watch")
    assert out.returncode == 3, out.stdout + out.stderr  # 3 = completed with failures
    job_id = re.search(r"submitted ([0-9a-f]{32})", out.stdout).group(1)

    with grpc.insecure_channel(server.target) as ch:
        job = pb_grpc.OrchestratorServiceStub(ch).GetJob(pb.GetJobRequest(job_id=job_id),
                                                         timeout=30).job
    assert job.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES
    notes = next(s for s in job.steps if s.name == "architecture_notes")
    assert notes.status == pb.STEP_STATUS_FAILED and notes.tolerated
    assert notes.failure.message == "no documents found matching tags: ['architecture']"

    # The last screen of `watch`: the filter step's row says Failed, in red.
    final = out.stdout[out.stdout.rfind("codebase_assess"):]
    row = next(line for line in final.splitlines() if "architecture_notes" in line and "│" in line)
    assert f"{BOLD_RED}Failed" in row
    assert "Completed with failures" in final
    assert "no documents found matching tags: ['architecture']" in re.sub(r"\x1b\[[0-9;]*m", "", final)

    shown = run_cli(server.target, "show", job_id)
    assert shown.returncode == 0 and f"{BOLD_RED}Failed" in shown.stdout


def test_cli_errors_are_typed_and_exit_2(server: Orchestrator, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[steps.a]\ntype = "nope"\n')
    out = run_cli(server.target, "submit", "--file", str(bad))
    assert out.returncode == 2
    assert "INVALID_ARGUMENT" in out.stderr and "steps.a.type" in out.stderr
    out = run_cli(server.target, "show", "0" * 32)
    assert out.returncode == 2 and "NOT_FOUND" in out.stderr
