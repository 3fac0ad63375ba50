"""Children on a Dask cluster: batches submitted as Dask tasks (dask_batch.run_batch), their
outcomes read back from the attempt's Dask queue as they happen and handed to the
attempt's ProgressRecorder. The orchestrator decides every status, as in-process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import tracing
from .dask_batch import (
    AttemptSpec,
    BatchSpec,
    Bye,
    ChildFailed,
    ChildOk,
    ChildResult,
    ChildRunning,
    Hello,
    Log,
    Message,
    StepFail,
    decode,
    run_batch,
)
from .executors import ExecutorUnavailable, TooManyChildFailures
from .problems import text_of
from .progress import ProgressRecorder
from .statuses import LogStream
from .step_types.base import Child, DocumentPut, StepContext, StepFailed, StepType

__all__ = ["DaskExecutor", "plan"]

CONNECT_TIMEOUT_S = 5.0
STOP_GRACE_S = 2.0  # how long a stopped attempt waits for its batches to kill their children


class DaskExecutor:
    """Children in batches on a Dask cluster; outcomes come back as they happen."""

    name = "dask"

    def __init__(self, scheduler: str, batch_size: int = 50, log_cap: int = 1 << 20) -> None:
        self.scheduler = scheduler
        self.batch_size = batch_size
        self.log_cap = log_cap
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Any:
        from distributed import Client

        async with self._lock:
            if self._client is not None and self._client.status == "running":
                return self._client
            if self._client is not None:
                with contextlib.suppress(Exception):
                    await self._client.close()
            try:
                self._client = await asyncio.wait_for(
                    Client(self.scheduler, asynchronous=True, timeout=CONNECT_TIMEOUT_S,
                           set_as_default=False), CONNECT_TIMEOUT_S * 2)
            except (OSError, TimeoutError) as exc:
                self._client = None
                raise ExecutorUnavailable(
                    f"cannot reach the Dask scheduler at {self.scheduler}: {text_of(exc)}") from None
            return self._client

    async def prepare(self, ctx: StepContext) -> None:
        client = await self._connect()
        try:
            found = await client.run(os.path.isdir, str(ctx.workspace))
        except (OSError, TimeoutError) as exc:
            raise ExecutorUnavailable(
                f"cannot reach the Dask scheduler at {self.scheduler}: {text_of(exc)}") from None
        if not found:
            raise ExecutorUnavailable(f"no Dask workers at {self.scheduler}")
        missing = sorted(w for w, ok in found.items() if not ok)
        if missing:
            raise ExecutorUnavailable(
                f"the workspace {ctx.workspace} does not exist on the Dask workers "
                f"{', '.join(missing)} (they need a shared filesystem)")

    async def run_children(self, step_type: StepType, ctx: StepContext, children: list[Child],
                           recorder: ProgressRecorder, concurrency: int) -> None:
        try:
            await self._run_children(step_type, ctx, children, recorder, concurrency)
        except (OSError, TimeoutError) as exc:  # the scheduler went away (CommClosedError...)
            raise ExecutorUnavailable(
                f"lost the Dask scheduler at {self.scheduler}: {text_of(exc)}") from None

    async def _run_children(self, step_type: StepType, ctx: StepContext, children: list[Child],
                            recorder: ProgressRecorder, concurrency: int) -> None:
        from distributed import Event, Queue

        client = await self._connect()
        name = f"stepwatch-{uuid.uuid4().hex}"
        out = await Queue(f"{name}-out", client=client)
        stop = Event(f"{name}-stop", client=client)
        run = _AttemptRun(children, recorder)
        threads = max(1, sum((await client.nthreads()).values()))
        per, at_once, each = plan(len(children), concurrency, threads, self.batch_size)
        items = list(enumerate(children))
        attempt = AttemptSpec(name, step_type.name, ctx.options, str(ctx.workspace), ctx.job_id,
                              ctx.step_name, dict(ctx.env), self.log_cap, recorder.max_failures,
                              ctx.env_allow, ctx.run_as, ctx.sandbox, ctx.allow_hardlinks,
                              dict(ctx.inputs))
        specs = [BatchSpec(attempt, n, items[s:s + per], each)
                 for n, s in enumerate(range(0, len(children), per))]
        waiting = list(reversed(specs))
        running: dict[Any, BatchSpec] = {}
        spans: dict[int, Any] = {}
        try:
            while waiting or running:
                while waiting and len(running) < at_once and ctx.may_start():
                    spec = waiting.pop()
                    future = client.submit(run_batch, spec, key=f"{name}-b{spec.number}",
                                           pure=False, retries=0)
                    running[future] = spec
                    spans[spec.number] = tracing.start_span(
                        "stepwatch.child_batch", job_id=ctx.job_id, step=ctx.step_name,
                        batch=spec.number, children=len(spec.items), executor=self.name)
                await self._receive(out, run)
                for future in [f for f in running if f.done()]:
                    spec = running.pop(future)
                    _end(spans.pop(spec.number, None), run.workers.get(spec.number))
                    if future.status != "finished":
                        await self._receive(out, run, wait=False)  # what it said before dying
                        exc = await _exception(future)
                        run.lost(spec, f"worker {run.workers.get(spec.number, 'unknown')} died "
                                       f"({text_of(exc)})" if exc else "its Dask task was lost")
                    elif await future.result() == "done":
                        await run.wait_for_bye(spec.number, lambda: self._receive(out, run))
            run.raise_if_over()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wait_for(self._stop(client, stop, running),
                                                      STOP_GRACE_S * 2))
            raise
        finally:
            for number, span in spans.items():
                _end(span, run.workers.get(number))
            with contextlib.suppress(Exception):
                out.close()

    async def _receive(self, out: Any, run: _AttemptRun, wait: bool = True) -> None:
        """Apply what the batches said; wait a little for the first message when asked."""
        got: list[list[list[Any]]] = []
        if wait:
            with contextlib.suppress(TimeoutError):
                got.append(await out.get(timeout=0.1))
        got += await out.get(batch=True)
        for messages in got:
            for m in messages:
                run.apply(decode(m))
        run.raise_if_over()

    async def _stop(self, client: Any, stop: Any, running: Mapping[Any, BatchSpec]) -> None:
        """Tell the batches to stop (they cancel their children, which kill their processes)
        and give them a moment to do it."""
        from distributed import wait

        await client.scheduler.event_set(name=stop.name)
        if running:
            with contextlib.suppress(Exception):
                await wait(list(running), timeout=STOP_GRACE_S)
            await client.cancel(list(running))

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()


@dataclass
class _AttemptRun:
    """One attempt's children as the batches report them: each child moves once."""

    children: list[Child]
    recorder: ProgressRecorder
    done: set[int] = field(default_factory=set)
    workers: dict[int, str] = field(default_factory=dict)  # batch number -> worker address
    said_bye: set[int] = field(default_factory=set)
    step_failure: str | None = None

    def apply(self, m: Message) -> None:
        match m:
            case Hello(batch, worker):
                self.workers[batch] = worker
            case Bye(batch):
                self.said_bye.add(batch)
            case Log(child, stream, data, nbytes):
                if child is None or child not in self.done:
                    self.recorder.write(child, LogStream(stream), data, nbytes)
            case _ if m.child in self.done:
                return  # a child moves once: its first outcome stands
            case ChildResult(child, text):
                self.recorder.result(child, text)
            case ChildRunning(child):
                self.recorder.running(child)
            case ChildOk(child, documents):
                self.done.add(child)
                self.recorder.completed(child, [DocumentPut(p, t, a) for p, t, a in documents])
            case ChildFailed(child, error):
                self.done.add(child)
                self.recorder.failed(child, error)
            case StepFail(child, error, message):
                self.done.add(child)
                self.recorder.failed(child, error)
                if self.step_failure is None:
                    self.step_failure = message

    def lost(self, spec: BatchSpec, why: str) -> None:
        """A batch's worker died: its unfinished children failed, for that reason."""
        for i, child in spec.items:
            if i not in self.done:
                self.done.add(i)
                self.recorder.failed(i, f"{child.key}: {why}")

    async def wait_for_bye(self, number: int, receive: Any) -> None:
        """A finished batch's last messages may still be in the queue: read until its bye."""
        while number not in self.said_bye:
            await receive()

    def raise_if_over(self) -> None:
        if self.step_failure is not None:
            raise StepFailed(self.step_failure)
        if self.recorder.over_tolerance():
            raise TooManyChildFailures


def _end(span: Any, worker: str | None) -> None:
    if span is not None:
        if worker:
            span.set_attribute("stepwatch.worker", worker)
        span.end()


async def _exception(future: Any) -> BaseException | None:
    with contextlib.suppress(Exception):
        exc: BaseException | None = await future.exception()
        return exc
    return None


def plan(children: int, concurrency: int, threads: int, batch_size: int) -> tuple[int, int, int]:
    """(children per batch, batches in flight, children at once in a batch).

    Batches spread over the cluster's threads, and in-flight batches x children at once
    never exceeds the step's concurrency."""
    at_once = max(1, min(threads, concurrency, children))
    each = max(1, concurrency // at_once)
    per = max(1, min(batch_size, -(-children // at_once)))
    return per, at_once, each
