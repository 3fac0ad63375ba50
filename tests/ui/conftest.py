from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation
from selenium import webdriver

from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.chromium import start_browser
from tests.procs import Proc

from .fake_orchestrator import FakeOrchestrator

MAIN = Path(__file__).parent / "ui_main.py"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOrchestrator]:
    servicer = FakeOrchestrator()
    server = grpc.aio.server()
    pb_grpc.add_OrchestratorServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    servicer.target = f"127.0.0.1:{port}"
    yield servicer
    await server.stop(None)


@pytest.fixture
async def user(fake: FakeOrchestrator, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[User]:
    monkeypatch.setenv("STEPWATCH_TARGET", fake.target)
    async with user_simulation(main_file=MAIN) as u:
        yield u


def data_status(user: User, marker: str) -> str | None:
    """The marked element's data-status, or None while it is not on the page yet."""
    try:
        found = user.find(marker=marker).elements
    except AssertionError:  # user.find raises when nothing matches
        return None
    return next(iter(found)).props.get("data-status")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Real headless Chromium (Debian's), closed after the test."""
    driver = start_browser()
    yield driver
    driver.quit()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; all stopped at the end, whatever happened."""
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()
