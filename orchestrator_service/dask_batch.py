"""The worker side of the Dask executor: one batch of an attempt's children, and the typed
messages it sends back through the attempt's Dask queue (pickled NamedTuples)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from . import rules
from .problems import text_of
from .sandbox import NONE as NO_SANDBOX
from .sandbox import Sandbox
from .statuses import LogStream
from .step_types.base import CURRENT_CHILD, Child, Document, StepContext, StepFailed, StepType

__all__ = ["AttemptSpec", "BatchSpec", "Bye", "ChildFailed", "ChildOk", "ChildResult",
           "ChildRunning", "Hello", "Log", "Message", "StepFail", "decode", "encode", "run_batch"]

SEND_EVERY_S = 0.05  # a batch sends what its children did at most this often


class Hello(NamedTuple):
    """The batch started on this worker."""

    batch: int
    worker: str


class Bye(NamedTuple):
    """The batch's last message: nothing of it follows."""

    batch: int


class Log(NamedTuple):
    child: int | None
    stream: int
    data: str  # empty past the cap: counted, not shipped
    nbytes: int


class ChildResult(NamedTuple):
    child: int
    text: str


class ChildRunning(NamedTuple):
    child: int


class ChildOk(NamedTuple):
    child: int
    documents: list[tuple[str, tuple[str, ...], dict[str, Any]]]  # path, tags, attrs


class ChildFailed(NamedTuple):
    child: int
    error: str


class StepFail(NamedTuple):
    """A child raised StepFailed: the whole attempt fails with ``message``."""

    child: int
    error: str
    message: str


Message = Hello | Bye | Log | ChildResult | ChildRunning | ChildOk | ChildFailed | StepFail

# The queue goes through the scheduler as msgpack (tuples arrive as lists, classes are lost):
# a message travels as [tag, *fields] and is typed again on arrival.
_KINDS: tuple[type[Message], ...] = (Hello, Bye, Log, ChildResult, ChildRunning, ChildOk,
                                     ChildFailed, StepFail)
_TAG = {k: i for i, k in enumerate(_KINDS)}


def encode(m: Message) -> list[Any]:
    return [_TAG[type(m)], *m]


def decode(raw: Sequence[Any]) -> Message:
    """A message as a batch sent it (a ChildOk's tags as a tuple again)."""
    m: Message = _KINDS[raw[0]](*raw[1:])
    if isinstance(m, ChildOk):
        return ChildOk(m.child, [(p, tuple(t), a) for p, t, a in m.documents])
    return m


@dataclass(frozen=True)
class AttemptSpec:
    """What every batch of one attempt shares: its step and how its children run."""

    name: str  # the attempt's prefix for its queue and events
    step_type: str
    options: Mapping[str, Any]
    workspace: str
    job_id: str
    step_name: str
    env: Mapping[str, str]
    log_cap: int
    max_failures: int
    env_allow: tuple[str, ...]
    run_as: str | None
    sandbox: Sandbox = NO_SANDBOX
    allow_hardlinks: bool = False
    inputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchSpec:
    """One batch of an attempt's children, as a worker receives it (pickled by Dask)."""

    attempt: AttemptSpec
    number: int
    items: list[tuple[int, Child]]
    concurrency: int


class _NoDocuments:
    async def documents(self, tags: Sequence[str] | None = None) -> list[Document]:
        raise RuntimeError("ctx.documents() is read in init(), on the orchestrator; give each "
                           "child what it needs in its payload")

    async def paths(self) -> list[str]:
        return [d.path for d in await self.documents()]


@dataclass
class _WorkerSink:
    """A child's output on a worker: capped as the recorder caps it, then sent on."""

    out: queue.SimpleQueue[Message]
    cap: int
    used: dict[int, int] = field(default_factory=dict)

    def write(self, child: int | None, stream: LogStream, data: str, nbytes: int) -> None:
        if child is not None:
            used = self.used.get(child, 0)
            self.used[child] = used + nbytes
            if used >= self.cap:
                data = ""  # counted by the recorder as dropped; not shipped
        self.out.put(Log(child, int(stream), data, nbytes))

    def result(self, child: int, text: str) -> None:
        self.out.put(ChildResult(child, text))


def run_batch(spec: BatchSpec) -> str:
    """A Dask task: run one batch of children on this worker, reporting as they go.

    Runs in a worker thread with its own event loop (a CPU-heavy child holds up this batch,
    not the worker's heartbeats); talks to the scheduler through the worker's own client,
    on the worker's loop. Never runs twice: a batch that finds its claim taken (Dask
    retrying it after its worker died) does nothing; the orchestrator already failed those
    children with the worker's name."""
    from distributed import Event, get_client, get_worker

    client, worker = get_client(), get_worker()
    claim = Event(f"{spec.attempt.name}-claim-{spec.number}", client=client)
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
    a = spec.attempt

    def on_worker(coro: Any) -> asyncio.Future[Any]:
        """Run a scheduler call on the worker's loop; await it from this batch's loop."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, worker_loop))

    messages: queue.SimpleQueue[Message] = queue.SimpleQueue()
    messages.put(Hello(spec.number, address))
    step_type = _step_types()[a.step_type]
    ctx = StepContext(a.job_id, a.step_name, a.options, Path(a.workspace),
                      _NoDocuments(), env=a.env, sink=_WorkerSink(messages, a.log_cap),
                      env_allow=a.env_allow, run_as=a.run_as, sandbox=a.sandbox,
                      allow_hardlinks=a.allow_hardlinks, inputs=a.inputs)
    gate = asyncio.Semaphore(spec.concurrency)
    out_name = f"{a.name}-out"
    failed = [0]
    halted = asyncio.Event()  # as in-process: past the tolerance, or StepFailed, start no more

    async def one(i: int, child: Child) -> None:
        async with gate:
            if halted.is_set():
                return  # never started: closed out as cancelled with the attempt
            CURRENT_CHILD.set(i)
            messages.put(ChildRunning(i))
            try:
                puts = await step_type.run_child(ctx, child)
            except StepFailed as exc:
                messages.put(StepFail(i, f"{child.key}: {text_of(exc)}", text_of(exc)))
                halted.set()
            except Exception as exc:
                messages.put(ChildFailed(i, f"{child.key}: {text_of(exc)}"))
                failed[0] += 1
                if rules.over_tolerance(failed[0], a.max_failures):
                    halted.set()
            else:
                messages.put(ChildOk(i, [(p.path, tuple(p.tags), dict(p.attrs))
                                         for p in puts or ()]))

    finishing = asyncio.Event()

    async def send() -> None:
        """Every SEND_EVERY_S, what the children did; last, the rest and a bye. Never
        cancelled mid-put: messages it took from the queue must reach the orchestrator."""
        while True:
            done = finishing.is_set()
            batch = [encode(m) for m in _drain(messages)] + ([encode(Bye(spec.number))]
                                                             if done else [])
            if batch:
                await on_worker(client.scheduler.queue_put(name=out_name, data=batch))
            if done:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finishing.wait(), SEND_EVERY_S)

    tasks = [asyncio.create_task(one(i, c)) for i, c in spec.items]
    sender = asyncio.create_task(send())
    # Set by the orchestrator on a cancel, a timeout, a stop policy or a lost lease.
    stopped = on_worker(client.scheduler.event_wait(name=f"{a.name}-stop", timeout=None))
    stopped.add_done_callback(lambda _: [t.cancel() for t in tasks])  # shell kills its group
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        stopped.cancel()
        finishing.set()
        await asyncio.gather(stopped, return_exceptions=True)
        await sender


def _drain(q: queue.SimpleQueue[Message]) -> list[Message]:
    got = []
    while True:
        try:
            got.append(q.get_nowait())
        except queue.Empty:
            return got
