from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--target", default=None,
        help="run tests/contract against an already running orchestrator (host:port) "
             "instead of starting one; also STEPWATCH_TARGET",
    )
