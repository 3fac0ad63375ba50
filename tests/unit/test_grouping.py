"""Group commit of a job's step writes (grouping.py): writes that arrive while one is in
flight go together in the next; a group that fails is retried write by write, so one bad
write fails alone; a cancelled caller does not take its write back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from orchestrator_service.grouping import StepWriteGroup
from orchestrator_service.model import StepState
from orchestrator_service.store import StaleWrite, StepWrite


class FakeStore:
    """Records each transaction's writes; a write for step "bad" fails its transaction."""

    def __init__(self) -> None:
        self.transactions: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def write_steps(self, writes: Sequence[StepWrite]) -> list[StepState]:
        await self.gate.wait()
        ids = [w.step_id for w in writes]
        if "bad" in ids:
            raise StaleWrite("bad is stale")
        self.transactions.append(ids)
        return [f"written {i}" for i in ids]  # type: ignore[misc]


def write(step_id: str) -> StepWrite:
    return StepWrite(step_id, 1, lambda s: None)  # type: ignore[arg-type,return-value]


async def behind_one_in_flight(
        store: FakeStore, later: Sequence[str]) -> tuple[asyncio.Task[StepState], list[Any]]:
    """Write "a" (held at the store's gate: in flight), then ``later`` while it is; open the
    gate. What the first write and the later ones got (errors as values)."""
    group = StepWriteGroup(store.write_steps)
    store.gate.clear()
    first = asyncio.create_task(group.write(write("a")))
    await asyncio.sleep(0)  # the first transaction is in flight, held at the gate
    rest = [asyncio.create_task(group.write(write(s))) for s in later]
    await asyncio.sleep(0)
    store.gate.set()
    await first
    return first, await asyncio.gather(*rest, return_exceptions=True)


async def test_writes_that_arrive_during_a_commit_share_the_next() -> None:
    store = FakeStore()
    first, rest = await behind_one_in_flight(store, "bcde")
    results = [first.result(), *rest]
    assert results == [f"written {s}" for s in "abcde"]
    assert store.transactions == [["a"], ["b", "c", "d", "e"]]


async def test_one_bad_write_fails_alone() -> None:
    store = FakeStore()
    first, got = await behind_one_in_flight(store, ("b", "bad", "c"))
    assert first.result() == "written a"
    assert got[0] == "written b" and got[2] == "written c"
    assert isinstance(got[1], StaleWrite)
    assert store.transactions == [["a"], ["b"], ["c"]]


async def test_a_cancelled_caller_still_has_its_write_committed() -> None:
    store = FakeStore()
    group = StepWriteGroup(store.write_steps)
    store.gate.clear()
    task = asyncio.create_task(group.write(write("a")))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.gate.set()
    async with asyncio.timeout(5):
        while not store.transactions:
            await asyncio.sleep(0)
    assert store.transactions == [["a"]]
