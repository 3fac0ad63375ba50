"""The contract suite: black-box, generated stubs only, no import of orchestrator_service.

By default it starts ``python -m orchestrator_service`` on a free port with a
temporary database. With ``--target HOST:PORT`` (or STEPWATCH_TARGET) it runs
against a server that is already running, as a conformance suite.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator


@dataclass
class Server:
    target: str
    own: Orchestrator | None  # None when pointed at an external server
    heartbeat_s: float


def _external_target(config: pytest.Config) -> str | None:
    return config.getoption("--target") or os.environ.get("STEPWATCH_TARGET")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Against an external server the suite runs once: the database is that server's."""
    if not _external_target(config):
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        param = getattr(getattr(item, "callspec", None), "params", {}).get("server")
        (drop if param == "postgresql" else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The suite runs against a server on SQLite, then one on PostgreSQL."""
    target = _external_target(request.config)
    if target:
        yield Server(target, None, heartbeat_s=5.0)
        return
    tmp: Path = tmp_path_factory.mktemp("contract")
    url = (request.getfixturevalue("postgres").new_database() if request.param == "postgresql"
           else f"sqlite:///{tmp / 'contract.db'}")
    proc = Orchestrator(url, workspace=tmp, heartbeat=0.5)
    yield Server(proc.target, proc, heartbeat_s=0.5)
    proc.stop()


@pytest.fixture(scope="session")
def channel(server: Server) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.target)
    grpc.channel_ready_future(ch).result(timeout=30)
    yield ch
    ch.close()


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> pb_grpc.OrchestratorServiceStub:
    return pb_grpc.OrchestratorServiceStub(channel)
