"""Where an attempt's children run: in the orchestrator's own event loop (``inprocess``, the
default) or on Dask distributed workers (``dask``).

Either way the orchestrator decides every status: an executor only reports what each child
did (running, completed with documents, failed with its error) to the attempt's
ProgressRecorder, which batches it into the store as before. The rules, counts and events
are the same for both.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from . import tracing
from .batches import run_sync_children
from .problems import text_of
from .progress import ProgressRecorder
from .step_types.base import (
    CURRENT_CHILD,
    Child,
    StepContext,
    StepFailed,
    StepType,
)

__all__ = ["Executor", "ExecutorUnavailable", "InProcessExecutor",
           "TooManyChildFailures", "make_executor"]

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 5.0
STOP_GRACE_S = 2.0  # how long a stopped attempt waits for its batches to kill their children
SEND_EVERY_S = 0.05  # a batch sends what its children did at most this often


class ExecutorUnavailable(Exception):
    """The executor cannot run this attempt (e.g. the Dask scheduler is unreachable)."""


class TooManyChildFailures(Exception):
    """More children failed than the step's max_child_failures allows: stop the attempt."""


class Executor(Protocol):
    name: str

    async def prepare(self, ctx: StepContext) -> None:
        """Before an attempt's children are recorded: raise ExecutorUnavailable if it cannot run."""

    async def run_children(self, step_type: StepType, ctx: StepContext, children: list[Child],
                           recorder: ProgressRecorder, concurrency: int) -> None:
        """Run every child, reporting to ``recorder``. Raises StepFailed or
        TooManyChildFailures to end the attempt early; a cancel stops the children."""

    async def close(self) -> None: ...


class InProcessExecutor:
    """Children as asyncio tasks of the orchestrator itself (what `make run` uses)."""

    name = "inprocess"

    async def prepare(self, ctx: StepContext) -> None:
        return None

    async def run_children(self, step_type: StepType, ctx: StepContext, children: list[Child],
                           recorder: ProgressRecorder, concurrency: int) -> None:
        if step_type.sync_children:
            with tracing.span("stepwatch.child_batch", job_id=ctx.job_id, step=ctx.step_name,
                              children=len(children), executor=self.name):
                await run_sync_children(step_type, ctx, children, recorder, concurrency,
                                        until_may_start)
            if recorder.over_tolerance():
                raise TooManyChildFailures
            return
        items = iter(enumerate(children))
        batch = tracing.span("stepwatch.child_batch", job_id=ctx.job_id, step=ctx.step_name,
                             children=len(children), executor=self.name)

        async def worker() -> None:
            for i, child in items:
                await until_may_start(ctx)
                CURRENT_CHILD.set(i)  # this task's context: ctx.log and ctx.result name the child
                recorder.running(i)
                try:
                    puts = await step_type.run_child(ctx, child)
                except StepFailed as exc:
                    recorder.failed(i, f"{child.key}: {text_of(exc)}")
                    raise
                except Exception as exc:
                    recorder.failed(i, f"{child.key}: {text_of(exc)}")
                    if recorder.over_tolerance():
                        raise TooManyChildFailures from None
                else:
                    recorder.completed(i, puts or ())

        workers = min(concurrency, len(children))
        if workers == 1:
            # One at a time (a one-command step, a chain's): in this task, not a group of
            # one; the child's number is set in this task's context, so it is put back.
            token = CURRENT_CHILD.set(None)
            try:
                with batch:
                    await worker()
            finally:
                CURRENT_CHILD.reset(token)
            return
        try:
            with batch:
                async with asyncio.TaskGroup() as tg:
                    for _ in range(workers):
                        tg.create_task(worker())
        except* StepFailed as group:
            raise group.exceptions[0] from None
        except* TooManyChildFailures:
            raise TooManyChildFailures from None

    async def close(self) -> None:
        return None


async def until_may_start(ctx: StepContext) -> None:
    """Hold a child back while the replica's lease is in doubt: either a renewal comes (and
    it starts) or the watchdog abandons the job (and this task is cancelled)."""
    while not ctx.may_start():
        await asyncio.sleep(0.05)


def make_executor(kind: str, scheduler: str | None, batch_size: int, log_cap: int) -> Executor:
    if kind == "inprocess":
        return InProcessExecutor()
    if kind == "dask":
        if not scheduler:
            raise ValueError("--executor dask needs --dask-scheduler tcp://HOST:PORT")
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ValueError("--executor dask needs the extra: pip install 'stepwatch[dask]'") from None
        from .dask_executor import DaskExecutor

        return DaskExecutor(scheduler, batch_size, log_cap)
    raise ValueError(f"unknown executor {kind!r} (inprocess or dask)")

