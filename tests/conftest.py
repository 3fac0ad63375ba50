from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dask_cluster import DaskCluster
from tests.postgres import PostgresCluster


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One real PostgreSQL server for the session (initdb in a temp folder, about a second)."""
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    """An empty database of its own on the session's PostgreSQL."""
    return postgres.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The suites run on both databases: a SQLite file of its own, or a PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres").new_database())
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'stepwatch.db'}"
