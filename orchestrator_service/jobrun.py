"""One running job (``JobRun``): its steps as last written, its step tasks, its attempts.

The run never decides a status: it asks ``rules`` (``next_actions`` after each step's task
ends, the transition of each attempt) and hands the typed answer to the store, which writes
rows and events in one transaction, fenced by the attempt the write belongs to. It keeps its
steps as last written (each write returns the stored step), so scheduling costs O(what
changed), never a reread of the whole job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import processes, rules, tracing
from .definitions import Limits
from .executors import Executor, ExecutorUnavailable, TooManyChildFailures
from .grouping import StepWriteGroup
from .inputs import env_of
from .model import ChildCounts, Failure, StepState
from .problems import text_of
from .progress import DEFAULT_LOG_CAP, InitOutput, ProgressRecorder
from .rules import StepTransition
from .sandbox import NONE as NO_SANDBOX
from .sandbox import Sandbox
from .slots import Hold, Slots
from .statuses import JobStatus, Policy, StepStatus
from .step_types.base import DEFAULT_ENV_ALLOW, Child, Document, StepContext, StepFailed, StepType
from .store import ProgressBatch, StaleWrite, StepWrite, Store, StoreUnavailable, now_us

__all__ = ["EngineConfig", "JobRun", "RunConfig"]


class JobDocuments:
    """What a step sees of its job's documents."""

    def __init__(self, store: Store, job_id: str) -> None:
        self._store = store
        self._job_id = job_id

    async def documents(self, tags: Sequence[str] | None = None) -> list[Document]:
        return await self._store.reads.documents(self._job_id, tags)

    async def paths(self) -> list[str]:
        return await self._store.reads.document_paths(self._job_id)


@dataclass(frozen=True)
class RunConfig:
    """How jobs run on this server: built once from its flags (config.py)."""

    #: Where step paths and commands are relative to.
    workspace: Path
    #: How often a running step's child progress is written (DESIGN.md: at most one count
    #: event per step per this interval).
    progress_interval: float = 0.1
    #: Step attempts running at once across all jobs; a ready step waits PENDING for a slot.
    max_running_steps: int = 64
    limits: Limits = Limits()
    #: Output kept per child.
    log_cap: int = DEFAULT_LOG_CAP
    #: What a command sees of the server's environment, and whom it runs as (confinement).
    env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW
    run_as: str | None = None
    sandbox: Sandbox = NO_SANDBOX
    #: Whether a file with several hard links may be read (scan_files, summarize).
    allow_hardlinks: bool = False


@dataclass(frozen=True)
class EngineConfig:
    """What every job run of one engine shares: its config and the parts it was given."""

    store: Store
    step_types: Mapping[str, StepType]
    run: RunConfig
    #: Where children run (executors.py); the rules and the store are the same for all.
    executor: Executor
    #: max_running_steps slots, across all jobs.
    slots: Slots
    #: The marker of the commands this database's orchestrator starts (processes.py).
    owner: str
    #: False while this replica's lease on the job is in doubt: no command of it starts then.
    may_start: Callable[[str], bool]


class JobRun:
    """One running job: its policy, its steps as last written, its running step tasks."""

    def __init__(self, config: EngineConfig, job_id: str) -> None:
        self.config = config
        self.store = config.store
        self.job_id = job_id
        self.policy = Policy.STOP
        self.inputs: dict[str, Any] = {}
        self.steps: dict[str, StepState] = {}
        self.dependents: dict[str, list[str]] = {}
        self.options: dict[str, tuple[dict[str, Any], int]] = {}
        self.tasks: dict[str, asyncio.Task[StepState]] = {}
        # Finished step tasks, in the order they finished: O(1) per completion, whatever
        # the number of steps running (asyncio.wait over every task would be O(running)).
        self.done: asyncio.Queue[asyncio.Task[StepState]] = asyncio.Queue()
        #: Step name -> cluster faults in a row (the backoff before its next attempt).
        self.cluster_faults: dict[str, int] = {}
        #: The job's step writes, committed in groups (grouping.py).
        self.group = StepWriteGroup(lambda ws: self.store.writes.write_steps(self.job_id, ws))
        #: Steps started in the transaction of the end that made them ready, each holding
        #: the slot of the step that ended, until the run loop launches them.
        self.handed: list[StepState] = []

    async def run(self) -> None:
        job = await self.store.reads.get_job(self.job_id)
        if job.status.terminal:
            return
        if job.status == JobStatus.PENDING:
            job = await self.store.writes.decide_job(self.job_id,
                                                     lambda j: rules.start_job(j, now_us()))
        self.policy = Policy(job.on_step_failure)
        self.inputs = dict(job.inputs)
        self.steps = {s.name: s for s in job.steps}
        for s in job.steps:
            for dep in s.depends_on:
                self.dependents.setdefault(dep, []).append(s.name)
        self.options = await self.store.reads.step_options(self.job_id)
        with tracing.span("stepwatch.job", job_id=self.job_id, definition=job.definition_name):
            try:
                await self._schedule()
            finally:
                await _cancel_all(self.tasks)
                self._release_handed()

    async def _schedule(self) -> None:
        ended: StepState | None = None
        while True:
            act = rules.next_actions(self.steps, self.policy, ended, self.dependents, self.tasks)
            if act.stop is not None:
                await self._stop(act.stop)
                return
            await self._skip_dependents(act.blocked)
            for name in act.launch:
                self._launch(self.steps[name])
            handed, self.handed = self.handed, []
            for s in handed:
                self.steps[s.name] = s
                self._launch(s, Hold(True))
            if not self.tasks:
                break
            task = await self.done.get()
            ended = task.result()
            del self.tasks[ended.name]
            self.steps[ended.name] = ended
            # Steps started with the end of the step before them are RUNNING already:
            # ``next_actions`` does not launch them again; they go on below, in their slot.
            for s in self.handed:
                self.steps[s.name] = s
        await self.store.writes.decide_job(self.job_id,
                                           lambda j: rules.finish_job(j.steps, now_us()))

    async def _stop(self, failed: StepState) -> None:
        await _cancel_all(self.tasks)
        self.tasks.clear()
        self._release_handed()
        await self.store.writes.decide_job(self.job_id,
                                           lambda j: rules.stop_job(j.steps, failed, now_us()))

    async def _skip_dependents(self, blocked: Sequence[StepState]) -> None:
        """Steps that depend, directly or not, on a step that did not complete are SKIPPED."""
        layer = list(blocked)
        while skips := rules.to_skip(layer, self.steps, self.dependents):
            layer = await self.store.writes.write_steps(
                self.job_id, [StepWrite(s.step_id, s.attempt, _skip_for(dep)) for s, dep in skips])
            for s in layer:
                self.steps[s.name] = s

    def _launch(self, step: StepState, hold: Hold | None = None) -> None:
        hold = hold or Hold(False)
        task = asyncio.create_task(self._run_step(step, hold), name=f"step-{step.name}")
        # Released when the task is done however it ends, even cancelled before it began.
        task.add_done_callback(lambda _: hold.release(self.config.slots))
        task.add_done_callback(self.done.put_nowait)
        self.tasks[step.name] = task

    def _release_handed(self) -> None:
        for _ in self.handed:
            self.config.slots.release()
        self.handed.clear()

    async def _run_step(self, step: StepState, hold: Hold) -> StepState:
        if not hold.held:
            await self.config.slots.acquire()
            hold.held = True
        ended, started = await self._run_attempts(step)
        if started is not None:  # the slot goes on with the step started (until launched,
            hold.held = False    # ``handed`` holds it: released by _release_handed)
            self.handed.append(started)
        return ended

    async def _run_attempts(self, step: StepState) -> tuple[StepState, StepState | None]:
        """The step's attempts until one ends it; with the step its end started, if any."""
        if step.status == StepStatus.PENDING:
            step = await self._write(step, lambda s: rules.start_attempt(s, now_us()))
        while True:
            # After a cluster fault the next attempt waits (exponential, capped): a scheduler
            # that is down is not asked again at once. (No fault: no turn of the loop given up.)
            if delay := rules.cluster_retry_delay(self.cluster_faults.get(step.name, 0)):
                await asyncio.sleep(delay)
            with tracing.span("stepwatch.step_attempt", job_id=self.job_id, step_id=step.step_id,
                              step=step.name, type=step.type, attempt=step.attempt) as span:
                failure, batch = await self._attempt(step)
                successor = self._successor(step) if failure is None else None
                if successor is None:
                    step = await self._write(step, self._outcome(failure), batch)
                    started = None
                else:
                    step, started = await self._end_and_start(step, batch, successor)
                if span is not None:
                    span.set_attribute("stepwatch.status", step.status.name)
            if step.status.terminal:
                return step, started

    def _successor(self, step: StepState) -> StepState | None:
        """The step this one's success makes ready, to start in the same transaction as its
        end: what ``rules.next_actions`` launches once the end is read back COMPLETED (the
        same rule, ``ready_after``; the first, if several: one slot to hand). None while
        other steps wait for a slot: the slot goes back to the queue then."""
        if self.config.slots.contended:
            return None
        launch = rules.ready_after(step.name, self.steps, self.dependents, self.tasks,
                                   completing=step.name)
        return self.steps[launch[0]] if launch else None

    async def _end_and_start(self, step: StepState, batch: ProgressBatch | None,
                             successor: StepState) -> tuple[StepState, StepState | None]:
        """The end of ``step``'s successful attempt and, only if that end is written
        COMPLETED, the start of ``successor``: submitted together, so one transaction."""
        end = self.group.submit(StepWrite(step.step_id, step.attempt, self._outcome(None), batch))
        start = self.group.submit(StepWrite(
            successor.step_id, successor.attempt, lambda s: rules.start_attempt(s, now_us()),
            after=(step.step_id, StepStatus.COMPLETED)))
        ended = await end
        try:
            started = await start
        except StaleWrite:  # e.g. the successor was cancelled meanwhile: it stays as it is
            return ended, None
        return ended, started if started.status == StepStatus.RUNNING else None

    async def _kill_escaped(self, step: StepState) -> None:
        """A stopped attempt's commands that left their process group (setsid) die too."""
        await asyncio.to_thread(processes.kill_marked, self.config.owner, step.step_id)

    def _outcome(self, failure: Failure | None) -> Callable[[StepState], StepTransition]:
        if failure is None:
            return lambda s: rules.attempt_succeeded(s, now_us())
        return lambda s: rules.attempt_failed(s, failure, self.policy, now_us())

    async def _write(self, step: StepState, decide: Callable[[StepState], StepTransition],
                     progress: ProgressBatch | None = None) -> StepState:
        return await self.group.write(StepWrite(step.step_id, step.attempt, decide, progress))

    async def _progress(self, batch: ProgressBatch) -> StepState:
        """A running attempt's progress, committed with the job's other step writes."""
        return await self.group.write(StepWrite(batch.step_id, batch.attempt, None, batch))

    async def _attempt(self, step: StepState) -> tuple[Failure | None, ProgressBatch | None]:
        """One attempt: init, then children. (None, last batch) when it succeeded."""
        cfg = self.config
        step_type = cfg.step_types.get(step.type)
        if step_type is None:
            return rules.init_failed(f"step type {step.type!r} is not installed on this server"), None
        options, concurrency = self.options[step.step_id]
        init_output = InitOutput(cfg.run.log_cap)
        ctx = StepContext(step.job_id, step.name, options, cfg.run.workspace,
                          JobDocuments(self.store, step.job_id),
                          # Inputs as variables, never as command text; the markers after
                          # them, so no input can pose as one.
                          env={**env_of(self.inputs),
                               "STEPWATCH_OWNER": cfg.owner, "STEPWATCH_JOB": step.job_id,
                               "STEPWATCH_STEP": step.step_id,
                               "STEPWATCH_ATTEMPT": str(step.attempt)}, inputs=self.inputs,
                          sink=init_output, env_allow=cfg.run.env_allow, run_as=cfg.run.run_as,
                          sandbox=cfg.run.sandbox, allow_hardlinks=cfg.run.allow_hardlinks,
                          may_start=functools.partial(cfg.may_start, step.job_id))
        recorder: ProgressRecorder | None = None
        children: list[Child] = []
        outcome: Failure | None
        try:
            async with asyncio.timeout(step.timeout_seconds):
                try:
                    children = list(await step_type.init(ctx))
                except (StaleWrite, StoreUnavailable):
                    raise
                except Exception as exc:  # the handler's own failure, reported verbatim
                    return rules.init_failed(text_of(exc)), _init_batch(step, init_output)
                if len(children) > cfg.run.limits.children:
                    return rules.init_failed(
                        f"{len(children)} children; a step may have at most "
                        f"{cfg.run.limits.children} (--max-children-per-step)"), None
                try:
                    await cfg.executor.prepare(ctx)
                except ExecutorUnavailable as exc:
                    self.cluster_faults[step.name] = self.cluster_faults.get(step.name, 0) + 1
                    return rules.cluster_failed(str(exc)), _init_batch(step, init_output)
                # The children are inserted with the attempt's first write (a quick step's
                # with its end): no transaction of their own.
                recorder = ProgressRecorder(self._progress, step.step_id, step.attempt,
                                            len(children), cfg.run.progress_interval, cfg.run.log_cap,
                                            step.max_child_failures, [c.key for c in children],
                                            init_output.lines)
                ctx = dataclasses.replace(ctx, sink=recorder)
                recorder.start()
                await cfg.executor.run_children(step_type, ctx, children, recorder, concurrency)
                outcome = rules.children_outcome(recorder.counts.failed, step.max_child_failures,
                                                 recorder.errors)
        except TimeoutError:
            await self._kill_escaped(step)
            outcome = rules.timed_out(step.timeout_seconds or 0)
            if recorder is None and children:
                # Out of time before they started (a slow cluster): they are still this
                # attempt's children, written with its end and closed out as cancelled.
                return outcome, _unstarted_batch(step, children, init_output)
        except StepFailed as exc:
            outcome = rules.execution_failed(text_of(exc))
        except ExecutorUnavailable as exc:  # e.g. the scheduler went away mid-attempt
            self.cluster_faults[step.name] = self.cluster_faults.get(step.name, 0) + 1
            return rules.cluster_failed(text_of(exc)), (
                await recorder.finish() if recorder is not None else None)
        except TooManyChildFailures:
            assert recorder is not None
            outcome = rules.children_outcome(recorder.counts.failed, step.max_child_failures,
                                             recorder.errors)
        except (StaleWrite, StoreUnavailable):
            raise
        except asyncio.CancelledError:
            # Stopped from outside (cancel, stop policy, shutdown): what the children did so far
            # is written; the decision that follows closes the attempt out.
            await asyncio.shield(self._kill_escaped(step))
            if recorder is not None:
                batch = await recorder.finish()
                if not batch.empty:
                    with contextlib.suppress(StaleWrite):
                        await self.store.writes.record_progress(batch)
            raise
        # Anything else is the orchestrator's own error, not the step's: the runner records
        # it as INTERNAL_ERROR (step code only runs in init and run_child, both caught above).
        self.cluster_faults.pop(step.name, None)
        return outcome, (await recorder.finish() if recorder is not None else None)


def _init_batch(step: StepState, output: InitOutput) -> ProgressBatch | None:
    """What a failed init logged, written with the attempt's end."""
    if not output.lines:
        return None
    return ProgressBatch(step.step_id, step.attempt, [], [], ChildCounts(), 0, output.lines)


def _unstarted_batch(step: StepState, children: list[Child], output: InitOutput) -> ProgressBatch:
    """An attempt's children that never started, with what its init logged."""
    n = len(children)
    return ProgressBatch(step.step_id, step.attempt, [], [], ChildCounts(total=n, pending=n), 0,
                         output.lines, [c.key for c in children])


def _skip_for(dep: StepState) -> Callable[[StepState], StepTransition]:
    return lambda s: rules.dependency_skipped(s, dep, now_us())


async def _cancel_all(tasks: Mapping[str, asyncio.Task[Any]]) -> None:
    for t in tasks.values():
        t.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
