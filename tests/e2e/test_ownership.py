"""One owner per database and per port: a second orchestrator refuses to start (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import REPO, Orchestrator

DEADLINE = 60


def _second(db_url: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_service", "--port", str(port), "--db-url", db_url,
         "--jobs-dir", str(REPO / "jobs")],
        cwd=REPO, capture_output=True, text=True, timeout=DEADLINE)


def _still_serves(target: str) -> None:
    with grpc.insecure_channel(target) as ch:
        pb_grpc.OrchestratorServiceStub(ch).ListJobs(pb.ListJobsRequest(), timeout=10)


def test_a_second_orchestrator_on_the_same_database_file_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "owned.db"
    first = Orchestrator(f"sqlite:///{db}")
    try:
        second = _second(f"sqlite:///{db}", 0)
        assert second.returncode == 2, second.stderr
        assert str(db) in second.stderr and "another orchestrator" in second.stderr
        assert f"pid {first.popen.pid}" in second.stderr
        assert "listening on" not in second.stdout
        _still_serves(first.target)
    finally:
        first.stop()
    # Once the owner is gone (its lock with it), the database is free again.
    again = Orchestrator(f"sqlite:///{db}")
    again.stop()


def test_a_second_server_on_the_same_port_exits_2(tmp_path: Path) -> None:
    first = Orchestrator(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        second = _second(f"sqlite:///{tmp_path / 'b.db'}", first.port)
        assert second.returncode == 2, second.stderr
        assert f"cannot listen on 127.0.0.1:{first.port}" in second.stderr
        assert "Traceback" not in second.stderr
        _still_serves(first.target)
    finally:
        first.stop()
