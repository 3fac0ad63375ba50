"""The in-process executor's asynchronous children: each one's output and outcome are
its own, whether they run one at a time (in the step's task) or several at once (tasks)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrator_service.executors import InProcessExecutor
from orchestrator_service.progress import ProgressRecorder
from orchestrator_service.statuses import ChildStatus
from orchestrator_service.step_types.base import (
    CURRENT_CHILD,
    Child,
    DocumentPut,
    StepContext,
    StepFailed,
    StepType,
)
from orchestrator_service.store import ProgressBatch


class Echo(StepType):
    """Logs its child's key; "fail" fails the child, "broken" the step."""

    name = "echo"

    async def run_child(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        await asyncio.sleep(0)
        ctx.log(f"{child.key}\n")
        if child.key == "fail":
            raise RuntimeError("no")
        if child.key == "broken":
            raise StepFailed("the step cannot go on")
        return ()


class NoDocuments:
    async def documents(self, tags: Sequence[str] | None = None) -> list[object]:
        return []

    async def paths(self) -> list[str]:
        return []


async def _run(keys: list[str], concurrency: int) -> tuple[ProgressBatch, int | None, str]:
    async def write(batch: ProgressBatch) -> None:
        return None

    rec = ProgressRecorder(write, "s", 1, len(keys), interval=60.0, max_failures=len(keys))
    ctx = StepContext("j", "s", {}, Path("."), NoDocuments(), sink=rec)  # type: ignore[arg-type]
    rec.start()
    raised = ""
    try:
        await InProcessExecutor().run_children(Echo(), ctx, [Child(k) for k in keys], rec,
                                               concurrency)
    except StepFailed as exc:
        raised = str(exc)
    return await rec.finish(), CURRENT_CHILD.get(), raised


@pytest.mark.parametrize("concurrency", [1, 3])
def test_each_child_logs_and_ends_as_its_own(concurrency: int) -> None:
    end, after, raised = asyncio.run(_run(["a", "fail", "c"], concurrency))
    assert raised == ""
    assert after is None  # the step's own context names no child afterwards
    assert sorted((line.child, line.text) for line in end.logs) == [
        (0, "a\n"), (1, "fail\n"), (2, "c\n")]
    status = {ch.child: ch.status for ch in end.children if ch.status != ChildStatus.RUNNING}
    assert status == {0: ChildStatus.COMPLETED, 1: ChildStatus.FAILED, 2: ChildStatus.COMPLETED}


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_child_that_breaks_the_step_ends_it_with_its_message(concurrency: int) -> None:
    end, after, raised = asyncio.run(_run(["broken", "b"], concurrency))
    assert raised == "the step cannot go on"
    assert after is None
    assert end.counts.failed == 1
