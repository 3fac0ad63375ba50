"""Children of a synchronous step type (``StepType.run_child_sync``: a file read, a stat, a
hash), run in process on a few worker threads, each taking children one after another
from the attempt's list.

Why: a child of `summarize` is ~20 us of work; as an asyncio task with its own thread
hand-off it cost ~300 us. Here a thread is handed work once per attempt (again only after
a pause for a lease in doubt) and reports what its children did through one outbox that
wakes the event loop at most every SEND_EVERY_S, never once per child. The recorder gets
the same calls, with the times the thread saw, so statuses, counts and events are exactly
those of the one-task-per-child path.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from . import rules
from .beneath import open_workspace
from .problems import text_of
from .progress import ProgressRecorder
from .statuses import LogStream
from .step_types.base import CURRENT_CHILD, Child, StepContext, StepFailed, StepType
from .store import now_us

__all__ = ["THREADS", "run_sync_children"]

#: Worker threads per attempt. The GIL runs one at a time, and every syscall of a child
#: (open, fstat, read, close) hands it over: with two, each handover waited for the other
#: thread. Measured on 20,000 small files: one thread 7,100-7,300/s with the page cache
#: dropped, two 6,800-7,700/s; in the summarize bench one 7,600-8,500/s, two 5,400-6,200/s.
THREADS = 1
SEND_EVERY_S = 0.05  # what the threads did reaches the recorder at most this late

_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stepwatch-children")

# One outcome as the thread saw it, replayed on the loop: (kind, child, at, what).
_Item = tuple[str, int | None, int, Any]


class _Control:
    """What the threads share: the next child, the failures so far, whether to stop."""

    def __init__(self, children: list[Child], failed: int, max_failures: int) -> None:
        self._next: Iterator[tuple[int, Child]] = iter(enumerate(children))
        self._lock = threading.Lock()
        self.failed = failed
        self.max_failures = max_failures
        self.halted = False  # past the tolerance, a StepFailed, or stopped from outside
        self.step_failed: StepFailed | None = None
        self._held: list[tuple[int, Child]] = []  # taken while the lease was in doubt

    def take(self) -> tuple[int, Child] | None:
        with self._lock:
            if self.halted:
                return None
            if self._held:
                return self._held.pop()
            return next(self._next, None)

    def hold(self, item: tuple[int, Child]) -> None:
        with self._lock:
            self._held.append(item)

    def fail(self, exc: Exception) -> None:
        with self._lock:
            if isinstance(exc, StepFailed):
                self.step_failed = self.step_failed or exc
                self.halted = True
                return
            self.failed += 1
            if rules.over_tolerance(self.failed, self.max_failures):
                self.halted = True


class _Outbox:
    """Thread -> loop: outcomes queue here; the loop is woken to apply them at most every
    SEND_EVERY_S (and once more when a thread ends)."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 apply: Callable[[list[_Item]], None]) -> None:
        self._loop = loop
        self._apply = apply
        self._items: list[_Item] = []
        self._lock = threading.Lock()
        self._sent_at = 0.0
        self._woken = False
        self.closed = False  # the attempt is over: later outcomes are not recorded

    def put(self, item: _Item) -> None:
        """Queue an outcome; a drain is due within SEND_EVERY_S of it, however long the
        thread's next child takes."""
        with self._lock:
            self._items.append(item)
            if self._woken:
                return
            self._woken = True
            delay = max(0.0, SEND_EVERY_S - (time.monotonic() - self._sent_at))
        self._wake(delay)

    def wake(self) -> None:
        with self._lock:
            if self._woken:
                return
            self._woken = True
        self._wake(0.0)

    def _wake(self, delay: float) -> None:
        try:
            if delay:
                self._loop.call_soon_threadsafe(self._loop.call_later, delay, self.drain)
            else:
                self._loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # the loop is closed (shutdown): nothing left to tell
            pass

    def drain(self) -> None:
        """On the loop: apply what has come in."""
        with self._lock:
            items, self._items = self._items, []
            self._woken = False
            self._sent_at = time.monotonic()
        if items and not self.closed:
            self._apply(items)


class _ThreadSink:
    """ctx.log and ctx.result from a worker thread: queued with the child's outcomes."""

    def __init__(self, outbox: _Outbox) -> None:
        self._outbox = outbox

    def write(self, child: int | None, stream: LogStream, data: str, nbytes: int) -> None:
        self._outbox.put(("log", child, now_us(), (stream, data, nbytes)))

    def result(self, child: int, text: str) -> None:
        self._outbox.put(("result", child, now_us(), text))


def _run(step_type: StepType, ctx: StepContext, control: _Control, outbox: _Outbox) -> bool:
    """On a worker thread: children one after another until none is left or the attempt
    halts. True when it stopped early, its child held back, because the replica's lease is
    in doubt."""
    try:
        ctx = replace(ctx, workspace_fd=open_workspace(ctx.workspace))
    except OSError:
        pass  # each child opens it by path, and says what is wrong with it
    try:
        while (item := control.take()) is not None:
            i, child = item
            if not ctx.may_start():
                control.hold(item)
                return True
            CURRENT_CHILD.set(i)
            outbox.put(("running", i, now_us(), None))
            try:
                puts = step_type.run_child_sync(ctx, child)
            except Exception as exc:  # StepFailed included: the whole attempt fails
                outbox.put(("failed", i, now_us(), f"{child.key}: {text_of(exc)}"))
                control.fail(exc)
            else:
                outbox.put(("completed", i, now_us(), puts or ()))
        return False
    finally:
        CURRENT_CHILD.set(None)
        if ctx.workspace_fd is not None:
            os.close(ctx.workspace_fd)
        outbox.wake()


def _replay(recorder: ProgressRecorder) -> Callable[[list[_Item]], None]:
    def apply(items: list[_Item]) -> None:
        for kind, child, at, what in items:
            if kind == "log":
                recorder.write(child, *what)
                continue
            assert child is not None
            if kind == "running":
                recorder.running(child, at)
            elif kind == "completed":
                recorder.completed(child, what, at)
            elif kind == "failed":
                recorder.failed(child, what, at)
            else:
                recorder.result(child, what)
    return apply


async def run_sync_children(step_type: StepType, ctx: StepContext, children: list[Child],
                            recorder: ProgressRecorder, concurrency: int,
                            until_may_start: Callable[[StepContext], Awaitable[None]]) -> None:
    """Run every child on worker threads; raise StepFailed as the one-task-per-child path
    does (the caller checks the tolerance). A cancel halts the threads after their
    current child; what they do after that is not recorded (the attempt is decided)."""
    loop = asyncio.get_running_loop()
    control = _Control(children, recorder.counts.failed, recorder.max_failures)
    outbox = _Outbox(loop, _replay(recorder))
    ctx = replace(ctx, sink=_ThreadSink(outbox))

    async def thread() -> None:
        while True:
            await until_may_start(ctx)
            if not await loop.run_in_executor(_POOL, _run, step_type, ctx, control, outbox):
                return

    try:
        await asyncio.gather(*(thread() for _ in range(min(concurrency, THREADS, len(children)))))
    except BaseException:
        control.halted = True
        outbox.closed = True
        raise
    outbox.drain()
    outbox.closed = True
    if control.step_failed is not None:
        raise control.step_failed
