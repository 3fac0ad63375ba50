"""How an attempt's children are cut into Dask batches: a property, no cluster."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator_service.dask_executor import plan


@given(st.integers(1, 100_000), st.integers(1, 512), st.integers(1, 256), st.integers(1, 500))
def test_batches_cover_every_child_and_never_exceed_the_concurrency(
        children: int, concurrency: int, threads: int, batch_size: int) -> None:
    per, at_once, each = plan(children, concurrency, threads, batch_size)
    assert 1 <= per <= batch_size
    assert at_once * each <= concurrency  # children running at once, across the cluster
    assert at_once <= threads  # one batch per worker thread
    batches = -(-children // per)
    assert batches * per >= children


def test_a_small_step_spreads_over_the_cluster() -> None:
    assert plan(4, 32, 4, 50) == (1, 4, 8)  # four children, four threads: one each
    assert plan(2000, 32, 4, 50) == (50, 4, 8)
