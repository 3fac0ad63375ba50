from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dask_cluster import DaskCluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--target", default=None,
        help="run tests/contract against an already running orchestrator (host:port) "
             "instead of starting one; also STEPWATCH_TARGET",
    )


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[DaskCluster]:
    """One real Dask scheduler and two workers for the session (about a second to start)."""
    cluster = DaskCluster()
    yield cluster
    cluster.stop()
