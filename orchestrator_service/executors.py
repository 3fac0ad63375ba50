"""Where an attempt's children run: in the orchestrator's own event loop (``inprocess``, the
default) or on Dask distributed workers (``dask``).

Either way the orchestrator decides every status: an executor only reports what each child
did (running, completed with documents, failed with its error) to the attempt's
ProgressRecorder, which batches it into the store as before. The rules, counts and events
are the same for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import rules, tracing
from .progress import ProgressRecorder
from .sandbox import NONE as NO_SANDBOX
from .sandbox import Sandbox
from .statuses import LogStream
from .step_types.base import (
    CURRENT_CHILD,
    Child,
    Document,
    DocumentPut,
    StepContext,
    StepFailed,
    StepType,
)

__all__ = ["DaskExecutor", "Executor", "ExecutorUnavailable", "InProcessExecutor",
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
                           recorder: ProgressRecorder, max_failures: int,
                           concurrency: int) -> None:
        """Run every child, reporting to ``recorder``. Raises StepFailed or
        TooManyChildFailures to end the attempt early; a cancel stops the children."""

    async def close(self) -> None: ...


class InProcessExecutor:
    """Children as asyncio tasks of the orchestrator itself (what `make run` uses)."""

    name = "inprocess"

    async def prepare(self, ctx: StepContext) -> None:
        return None

    async def run_children(self, step_type: StepType, ctx: StepContext, children: list[Child],
                           recorder: ProgressRecorder, max_failures: int,
                           concurrency: int) -> None:
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
                    recorder.failed(i, f"{child.key}: {_text(exc)}")
                    raise
                except Exception as exc:
                    recorder.failed(i, f"{child.key}: {_text(exc)}")
                    if rules.over_tolerance(recorder.counts.failed, max_failures):
                        raise TooManyChildFailures from None
                else:
                    recorder.completed(i, puts or ())

        try:
            with batch:
                async with asyncio.TaskGroup() as tg:
                    for _ in range(min(concurrency, len(children))):
                        tg.create_task(worker())
        except* StepFailed as group:
            raise group.exceptions[0] from None
        except* TooManyChildFailures:
            raise TooManyChildFailures from None

    async def close(self) -> None:
        return None


# -- Dask ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSpec:
    """One batch of an attempt's children, as a worker receives it (pickled by Dask)."""

    name: str  # the attempt's prefix for its queue and events
    number: int
    step_type: str
    options: Mapping[str, Any]
    workspace: str
    job_id: str
    step_name: str
    env: Mapping[str, str]
    items: list[tuple[int, Child]]
    concurrency: int
    log_cap: int
    max_failures: int
    env_allow: tuple[str, ...]
    run_as: str | None
    sandbox: Sandbox = NO_SANDBOX
    allow_hardlinks: bool = False


class _NoDocuments:
    async def documents(self, tags: Sequence[str] | None = None) -> list[Document]:
        raise RuntimeError("ctx.documents() is read in init(), on the orchestrator; give each "
                           "child what it needs in its payload")


@dataclass
class _WorkerSink:
    """A child's output on a worker: capped as the recorder caps it, then sent on."""

    out: queue.SimpleQueue[list[Any]]
    cap: int
    used: dict[int, int] = field(default_factory=dict)

    def write(self, child: int | None, stream: LogStream, data: str, nbytes: int) -> None:
        if child is not None:
            used = self.used.get(child, 0)
            self.used[child] = used + nbytes
            if used >= self.cap:
                data = ""  # counted by the recorder as dropped; not shipped
        self.out.put(["log", child, int(stream), data, nbytes])

    def result(self, child: int, text: str) -> None:
        self.out.put(["result", child, text])


def run_batch(spec: BatchSpec) -> str:
    """A Dask task: run one batch of children on this worker, reporting as they go.

    Runs in a worker thread with its own event loop (a CPU-heavy child holds up this batch,
    not the worker's heartbeats); talks to the scheduler through the worker's own client,
    on the worker's loop. Never runs twice: a batch that finds its claim taken (Dask
    retrying it after its worker died) does nothing; the orchestrator already failed those
    children with the worker's name."""
    from distributed import Event, get_client, get_worker

    client, worker = get_client(), get_worker()
    claim = Event(f"{spec.name}-claim-{spec.number}", client=client)
    if claim.is_set():
        return "not run again"
    claim.set()
    asyncio.run(_batch(spec, worker.address, client))
    return "done"


@functools.cache
def _step_types() -> Mapping[str, StepType]:
    from .step_types import load_step_types

    return load_step_types()


async def _batch(spec: BatchSpec, address: str, client: Any) -> None:
    worker_loop = client.loop.asyncio_loop

    def on_worker(coro: Any) -> asyncio.Future[Any]:
        """Run a scheduler call on the worker's loop; await it from this batch's loop."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, worker_loop))

    messages: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
    messages.put(["hello", spec.number, address])
    step_type = _step_types()[spec.step_type]
    ctx = StepContext(spec.job_id, spec.step_name, spec.options, Path(spec.workspace),
                      _NoDocuments(), env=spec.env, sink=_WorkerSink(messages, spec.log_cap),
                      env_allow=spec.env_allow, run_as=spec.run_as, sandbox=spec.sandbox,
                      allow_hardlinks=spec.allow_hardlinks)
    gate = asyncio.Semaphore(spec.concurrency)
    out_name = f"{spec.name}-out"
    failed = [0]
    halted = asyncio.Event()  # as in-process: past the tolerance, or StepFailed, start no more

    async def one(i: int, child: Child) -> None:
        async with gate:
            if halted.is_set():
                return  # never started: closed out as cancelled with the attempt
            CURRENT_CHILD.set(i)
            messages.put(["run", i])
            try:
                puts = await step_type.run_child(ctx, child)
            except StepFailed as exc:
                messages.put(["stepfail", i, f"{child.key}: {_text(exc)}", _text(exc)])
                halted.set()
            except Exception as exc:
                messages.put(["fail", i, f"{child.key}: {_text(exc)}"])
                failed[0] += 1
                if rules.over_tolerance(failed[0], spec.max_failures):
                    halted.set()
            else:
                messages.put(["ok", i, [[p.path, list(p.tags), dict(p.attrs)] for p in puts or ()]])

    finishing = asyncio.Event()

    async def send() -> None:
        """Every SEND_EVERY_S, what the children did; last, the rest and a bye. Never
        cancelled mid-put: messages it took from the queue must reach the orchestrator."""
        while True:
            done = finishing.is_set()
            batch = _drain(messages) + ([["bye", spec.number]] if done else [])
            if batch:
                await on_worker(client.scheduler.queue_put(name=out_name, data=batch))
            if done:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finishing.wait(), SEND_EVERY_S)

    tasks = [asyncio.create_task(one(i, c)) for i, c in spec.items]
    sender = asyncio.create_task(send())
    # Set by the orchestrator on a cancel, a timeout, a stop policy or a lost lease.
    stopped = on_worker(client.scheduler.event_wait(name=f"{spec.name}-stop", timeout=None))
    stopped.add_done_callback(lambda _: [t.cancel() for t in tasks])  # shell kills its group
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        stopped.cancel()
        finishing.set()
        await asyncio.gather(stopped, return_exceptions=True)
        await sender


async def until_may_start(ctx: StepContext) -> None:
    """Hold a child back while the replica's lease is in doubt: either a renewal comes (and
    it starts) or the watchdog abandons the job (and this task is cancelled)."""
    while not ctx.may_start():
        await asyncio.sleep(0.05)


def _drain(q: queue.SimpleQueue[list[Any]]) -> list[list[Any]]:
    got = []
    while True:
        try:
            got.append(q.get_nowait())
        except queue.Empty:
            return got


def plan(children: int, concurrency: int, threads: int, batch_size: int) -> tuple[int, int, int]:
    """(children per batch, batches in flight, children at once in a batch).

    Batches spread over the cluster's threads, and in-flight batches x children at once
    never exceeds the step's concurrency."""
    at_once = max(1, min(threads, concurrency, children))
    each = max(1, concurrency // at_once)
    per = max(1, min(batch_size, -(-children // at_once)))
    return per, at_once, each


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
                    f"cannot reach the Dask scheduler at {self.scheduler}: {_text(exc)}") from None
            return self._client

    async def prepare(self, ctx: StepContext) -> None:
        client = await self._connect()
        try:
            found = await client.run(os.path.isdir, str(ctx.workspace))
        except (OSError, TimeoutError) as exc:
            raise ExecutorUnavailable(
                f"cannot reach the Dask scheduler at {self.scheduler}: {_text(exc)}") from None
        if not found:
            raise ExecutorUnavailable(f"no Dask workers at {self.scheduler}")
        missing = sorted(w for w, ok in found.items() if not ok)
        if missing:
            raise ExecutorUnavailable(
                f"the workspace {ctx.workspace} does not exist on the Dask workers "
                f"{', '.join(missing)} (they need a shared filesystem)")

    async def run_children(self, step_type: StepType, ctx: StepContext, children: list[Child],
                           recorder: ProgressRecorder, max_failures: int,
                           concurrency: int) -> None:
        try:
            await self._run_children(step_type, ctx, children, recorder, max_failures,
                                     concurrency)
        except (OSError, TimeoutError) as exc:  # the scheduler went away (CommClosedError...)
            raise ExecutorUnavailable(
                f"lost the Dask scheduler at {self.scheduler}: {_text(exc)}") from None

    async def _run_children(self, step_type: StepType, ctx: StepContext, children: list[Child],
                            recorder: ProgressRecorder, max_failures: int,
                            concurrency: int) -> None:
        from distributed import Event, Queue

        client = await self._connect()
        name = f"stepwatch-{uuid.uuid4().hex}"
        out = await Queue(f"{name}-out", client=client)
        stop = Event(f"{name}-stop", client=client)
        run = _AttemptRun(children, recorder, max_failures)
        threads = max(1, sum((await client.nthreads()).values()))
        per, at_once, each = plan(len(children), concurrency, threads, self.batch_size)
        items = list(enumerate(children))
        specs = [BatchSpec(name, n, step_type.name, ctx.options, str(ctx.workspace), ctx.job_id,
                           ctx.step_name, dict(ctx.env), items[s:s + per], each, self.log_cap,
                           max_failures, ctx.env_allow, ctx.run_as, ctx.sandbox,
                           ctx.allow_hardlinks)
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
                                       f"({_text(exc)})" if exc else "its Dask task was lost")
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
                run.apply(m)
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
    max_failures: int
    done: set[int] = field(default_factory=set)
    workers: dict[int, str] = field(default_factory=dict)  # batch number -> worker address
    said_bye: set[int] = field(default_factory=set)
    step_failure: str | None = None

    def apply(self, m: list[Any]) -> None:
        kind = m[0]
        if kind == "hello":
            self.workers[m[1]] = m[2]
        elif kind == "bye":
            self.said_bye.add(m[1])
        elif kind == "log":
            if m[1] is None or m[1] not in self.done:
                self.recorder.write(m[1], LogStream(m[2]), m[3], m[4])
        elif m[1] in self.done:
            return  # a child moves once: its first outcome stands
        elif kind == "result":
            self.recorder.result(m[1], m[2])
        elif kind == "run":
            self.recorder.running(m[1])
        elif kind == "ok":
            self.done.add(m[1])
            self.recorder.completed(m[1], [DocumentPut(p, tuple(t), a) for p, t, a in m[2]])
        elif kind in ("fail", "stepfail"):
            self.done.add(m[1])
            self.recorder.failed(m[1], m[2])
            if kind == "stepfail" and self.step_failure is None:
                self.step_failure = m[3]

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
        if rules.over_tolerance(self.recorder.counts.failed, self.max_failures):
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
        return DaskExecutor(scheduler, batch_size, log_cap)
    raise ValueError(f"unknown executor {kind!r} (inprocess or dask)")


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__

