"""Runs jobs: the registry and lifecycle (``Engine``), one ``JobRun`` per running job.

The engine never decides a status: it asks ``rules`` and hands the typed answer
to the store, which writes rows and events in one transaction, fenced by the
attempt the write belongs to. A run keeps its steps as last written (each write
returns the stored step), so scheduling costs O(what changed), never a reread
of the whole job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import processes, rules, tracing
from .definitions import DefinitionError, JobDefinition, Limits, Violation, parse_definition
from .executors import Executor, ExecutorUnavailable, InProcessExecutor, TooManyChildFailures
from .leases import Claimed
from .model import ChildCounts, Failure, JobState, StepState
from .problems import Code, ServerError
from .progress import DEFAULT_LOG_CAP, InitOutput, ProgressRecorder
from .rules import Decision, StepTransition
from .sandbox import NONE as NO_SANDBOX
from .sandbox import Sandbox
from .statuses import FailureReason, JobStatus, Policy, StepStatus
from .step_types.base import (
    DEFAULT_ENV_ALLOW,
    Document,
    OptionError,
    StepContext,
    StepFailed,
    StepType,
)
from .store import (
    JobNotFound,
    LeaseLost,
    ProgressBatch,
    RequestKey,
    Rerun,
    StaleWrite,
    StepWrite,
    Store,
    StoreUnavailable,
    now_us,
)

__all__ = ["CancelNotConfirmed", "Engine", "JobAlreadyFinished", "JobNotFinished"]

log = logging.getLogger(__name__)
MAX_RUNNER_RESTARTS = 3  # a runner refused while its job is RUNNING is restarted this often


class JobAlreadyFinished(ServerError):
    code = Code.FAILED_PRECONDITION

    def __init__(self, job: JobState) -> None:
        super().__init__(f"job {job.job_id} is already {job.status.name}")
        self.job = job


class InlineRerunRefused(ServerError):
    """A rerun of an inline definition by a caller who may not submit one."""

    code = Code.PERMISSION_DENIED

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} ran an inline definition: rerunning it runs that text "
                         "again, which needs the admin role")


class JobNotFinished(ServerError):
    code = Code.FAILED_PRECONDITION

    def __init__(self, job: JobState) -> None:
        super().__init__(f"job {job.job_id} is {job.status.name}: only a finished job can be "
                         "rerun (cancel it, or wait for it to end)")
        self.job = job


class CancelNotConfirmed(ServerError):
    """The cancel is recorded, but the replica running the job has not carried it out yet."""

    code = Code.UNAVAILABLE


class JobDocuments:
    """What a step sees of its job's documents."""

    def __init__(self, store: Store, job_id: str) -> None:
        self._store = store
        self._job_id = job_id

    async def documents(self, tags: Sequence[str] | None = None) -> list[Document]:
        return await self._store.documents(self._job_id, tags)


@dataclass(frozen=True)
class EngineConfig:
    store: Store
    step_types: Mapping[str, StepType]
    workspace: Path
    progress_interval: float
    #: Step attempts running at once across all jobs; a ready step waits PENDING for a slot.
    slots: asyncio.Semaphore
    #: The marker of the commands this database's orchestrator starts (processes.py).
    owner: str
    limits: Limits
    log_cap: int = DEFAULT_LOG_CAP
    #: Where children run (executors.py); the rules and the store are the same for all.
    executor: Executor = field(default_factory=InProcessExecutor)
    #: What a command sees of the server's environment, and whom it runs as (confinement).
    env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW
    run_as: str | None = None
    sandbox: Sandbox = NO_SANDBOX
    #: Whether a file with several hard links may be read (scan_files, summarize).
    allow_hardlinks: bool = False
    #: False while this replica's leases are in doubt: no command starts then.
    may_start: Callable[[], bool] = lambda: True


class Engine:
    """The registry of running jobs: submit, cancel, recover, stop."""

    def __init__(self, store: Store, step_types: Mapping[str, StepType], workspace: Path,
                 progress_interval: float = 0.1, max_running_steps: int = 64,
                 limits: Limits = Limits(), log_cap: int = DEFAULT_LOG_CAP,
                 executor: Executor | None = None, env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW,
                 run_as: str | None = None, sandbox: Sandbox = NO_SANDBOX,
                 allow_hardlinks: bool = False) -> None:
        self.store = store
        self.step_types = step_types
        self.workspace = workspace
        # Replicas on one machine each mark their own commands: one never kills another's.
        marker = store.identity if store.leases is None else f"{store.identity}|{store.leases.name}"
        self.config = EngineConfig(store, step_types, workspace, progress_interval,
                                   asyncio.Semaphore(max_running_steps),
                                   processes.owner_key(marker), limits, log_cap,
                                   executor or InProcessExecutor(), env_allow, run_as, sandbox,
                                   allow_hardlinks,
                                   store.leases.fresh if store.leases is not None else _always)
        self.limits = limits
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._cancels: set[asyncio.Task[Any]] = set()
        self._cancelling: set[str] = set()  # jobs whose cancel another replica asked for, under way
        #: How long a CancelJob for a job another replica runs waits for its outcome.
        self.remote_cancel_s = 10.0

    # -- lifecycle -----------------------------------------------------------

    async def recover(self) -> None:
        """At start: interrupted steps get a new attempt or FAILED; unfinished jobs go on.

        First, every command a dead predecessor left running is killed: nothing runs
        beside the attempt that follows it.
        """
        killed = await asyncio.to_thread(processes.kill_marked, self.config.owner)
        if killed:
            log.warning("killed %d command(s) left running by the previous orchestrator", killed)
        if self.store.leases is not None:
            return  # replicas: jobs are taken over by the lease sweep (replicas.py), not here
        for job_id in await self.store.unfinished_jobs():
            await self.store.decide_job(job_id, lambda j: rules.interrupted_job(j, now_us()))
            self._launch(job_id)

    async def adopt(self, claimed: Claimed, patience_s: float = 5.0) -> None:
        """A job whose lease this replica just took: its previous runner is gone. Commands it
        left on this machine die first; its interrupted steps get a new attempt or FAILED.

        Its reads are retried like writes (for ``patience_s``); a takeover that still fails
        gives the job back at once (dropped here, its lease expired) for any replica to
        claim, rather than hold a lease with nothing running it."""
        try:
            job = await self._read_patiently(claimed.job_id, patience_s)
            for s in job.steps:
                if s.status == StepStatus.RUNNING:
                    await asyncio.to_thread(processes.kill_marked, None, s.step_id)
            await self.store.decide_job(claimed.job_id,
                                        lambda j: rules.interrupted_job(j, now_us()))
        except StaleWrite as exc:  # lost again already, or finished meanwhile
            log.info("job %s: not taken over: %s", claimed.job_id, exc)
            return
        except (StoreUnavailable, JobNotFound) as exc:
            log.error("job %s: taking it over failed (%s); giving it back", claimed.job_id, exc)
            await self.store.give_back(claimed.job_id, claimed.epoch)
            return
        if claimed.cancel_requested:
            self.carry_out_cancel(claimed.job_id)
        else:
            self._launch(claimed.job_id)

    async def _read_patiently(self, job_id: str, patience_s: float) -> JobState:
        """The job, read again with a growing pause while storage faults last (bounded)."""
        pause = 0.05
        deadline = asyncio.get_running_loop().time() + patience_s
        while True:
            try:
                return await self.store.get_job(job_id)
            except StoreUnavailable:
                if asyncio.get_running_loop().time() + pause > deadline:
                    raise
                log.warning("job %s: its read failed during takeover; trying again", job_id)
            await asyncio.sleep(pause)  # backoff between reads of a faulty database
            pause = min(1.0, pause * 2)

    def abandon(self, job_id: str) -> None:
        """This replica lost the job's lease: stop its runner and commands, decide nothing
        (the new owner decides; our late writes would be refused anyway)."""
        if self.store.leases is not None:
            self.store.leases.drop(job_id)
        task = self._runs.get(job_id)
        if task is not None:
            log.warning("job %s: lease lost; stopping its runner and commands here", job_id)
            task.cancel()

    def carry_out_cancel(self, job_id: str) -> None:
        """A CancelJob received by another replica, for a job this one runs."""
        if self.store.leases is None or job_id not in self.store.leases \
                or job_id in self._cancelling:
            return

        async def cancel() -> None:
            with contextlib.suppress(JobAlreadyFinished, StaleWrite):
                await self.cancel(job_id)

        task = asyncio.create_task(cancel(), name=f"cancel-{job_id}")
        self._cancels.add(task)
        self._cancelling.add(job_id)

        def done(t: asyncio.Task[None]) -> None:
            self._cancels.discard(t)
            self._cancelling.discard(job_id)

        task.add_done_callback(done)

    async def stop(self) -> None:
        """Stop running jobs without deciding anything: the next start recovers them."""
        tasks = [*self._runs.values(), *self._cancels]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.config.executor.close()

    # -- commands ------------------------------------------------------------

    async def submit(self, definition: JobDefinition, source_toml: str,
                     request: RequestKey | None = None, source: str = "inline") -> JobState:
        """A new job, started; with a request key seen within a day, that job instead."""
        await asyncio.to_thread(self.check_paths, definition)
        job, created = await self.store.create_job(definition, source_toml, request, source)
        if created:
            self._launch(job.job_id)
        return job

    def check_paths(self, definition: JobDefinition) -> None:
        """Path options that lead out of the workspace are refused before anything runs."""
        violations = []
        for step in definition.steps:
            step_type = self.step_types.get(step.type)
            try:
                if step_type is not None:
                    step_type.check_paths(step.options, self.workspace)
            except OptionError as exc:
                violations.append(Violation(f"steps.{step.name}.{exc.key}", exc.message))
        if violations:
            raise DefinitionError(violations)

    async def rerun(self, job_id: str, failed_only: bool, request: RequestKey | None = None,
                    may_run_inline: bool = True) -> JobState:
        """A finished job again, as a new job; failed-only carries its COMPLETED steps over.
        An inline definition runs again only for a caller who may submit one."""
        original = await self.store.get_job(job_id)
        text, source = await self.store.definition_text(job_id)
        if source != "catalog" and not may_run_inline:
            raise InlineRerunRefused(job_id)
        if not original.status.terminal:
            raise JobNotFinished(original)
        definition = await asyncio.to_thread(parse_definition, text, self.step_types, self.limits)
        await asyncio.to_thread(self.check_paths, definition)
        carried = rules.rerun_carries(original, failed_only)
        job, created = await self.store.create_rerun(
            definition, text, Rerun(job_id, {s.name: s for s in original.steps if s.name in carried}),
            request, source)
        if created:
            self._launch(job.job_id)
        return job

    async def cancel(self, job_id: str) -> JobState:
        self.store.require_available()  # before stopping anything: the decision must be written
        job = await self.store.get_job(job_id)
        if job.status.terminal:
            raise JobAlreadyFinished(job)
        book = self.store.leases
        if book is not None and job_id not in book:
            claimed = await self.store.request_cancel(job_id)
            if claimed is None:
                return await self._await_remote_cancel(job_id)
        task = self._runs.get(job_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        def decide(current: JobState) -> Decision:
            if current.status.terminal:
                raise JobAlreadyFinished(current)
            return rules.cancel(current, now_us())

        return await self.store.decide_job(job_id, decide)

    async def _await_remote_cancel(self, job_id: str) -> JobState:
        """The owner cancels on the notification (or its successor at takeover): wait for the
        job's terminal status, reading the store with a growing pause, within a deadline."""
        pause = 0.02
        try:
            async with asyncio.timeout(self.remote_cancel_s):
                while True:
                    job = await self.store.get_job(job_id)
                    if job.status.terminal:
                        return job
                    await asyncio.sleep(pause)  # a poll of another process's write, bounded
                    pause = min(0.2, pause * 2)
        except TimeoutError:
            raise CancelNotConfirmed(
                f"cancel of job {job_id} is recorded, but the replica running it has not carried "
                f"it out within {self.remote_cancel_s:g} s; it will when that replica or the one "
                "taking its jobs over reads it") from None

    async def wait(self, job_id: str) -> None:
        """Until the job's runner is done (for tests and benchmarks)."""
        task = self._runs.get(job_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    @property
    def running(self) -> int:
        return len(self._runs)

    # -- running a job -------------------------------------------------------

    def _launch(self, job_id: str, restarts: int = 0) -> None:
        task = asyncio.create_task(self._run_job(job_id, restarts), name=f"job-{job_id}")
        self._runs[job_id] = task
        task.add_done_callback(lambda t: self._finished(job_id, t))

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._runs.get(job_id) is task:
            del self._runs[job_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: runner ended with an error", job_id, exc_info=task.exception())

    async def _run_job(self, job_id: str, restarts: int = 0) -> None:
        try:
            await JobRun(self.config, job_id).run()
        except LeaseLost as exc:
            log.info("job %s: runner stopped: %s", job_id, exc)
        except StaleWrite as exc:
            await self._after_stale(job_id, exc, restarts)
        except Exception as exc:  # a store that kept failing, or a bug: never leave it RUNNING
            log.exception("job %s: runner crashed", job_id)
            await self._record_internal_error(job_id, exc)

    async def _after_stale(self, job_id: str, exc: StaleWrite, restarts: int) -> None:
        """A write of the runner was refused. Usually another decision ended the job (a
        cancel): nothing to do. But a job still RUNNING here must not be left without a
        runner: its interrupted steps are recovered and it goes on (a few times at most)."""
        try:
            job = await self._read_patiently(job_id, 30.0)
        except (StoreUnavailable, JobNotFound):
            log.error("job %s: runner stopped (%s) and the job cannot be read", job_id, exc)
            return
        book = self.store.leases
        if job.status.terminal or (book is not None and job_id not in book):
            log.info("job %s: runner stopped: %s", job_id, exc)
            return
        if restarts >= MAX_RUNNER_RESTARTS:
            await self._record_internal_error(job_id, exc)
            return
        log.warning("job %s: a write was refused (%s) though the job is still %s: recovering "
                    "its steps and going on", job_id, exc, job.status.name)
        try:
            await self.store.decide_job(job_id, lambda j: rules.interrupted_job(j, now_us()))
        except StaleWrite:
            return
        self._launch(job_id, restarts + 1)

    async def _record_internal_error(self, job_id: str, exc: Exception) -> None:
        message = _text(exc) if isinstance(exc, StoreUnavailable) else (
            f"{type(exc).__name__}: {_text(exc)}")

        def decide(job: JobState) -> Decision:
            if job.status.terminal:
                return Decision()
            return rules.internal_error(job.steps, message[:500], now_us())

        try:
            await self.store.decide_job(job_id, decide)
        except Exception:
            log.exception("job %s: could not record its internal error either; the next start "
                          "recovers it", job_id)


class JobRun:
    """One running job: its policy, its steps as last written, its running step tasks."""

    def __init__(self, config: EngineConfig, job_id: str) -> None:
        self.config = config
        self.store = config.store
        self.job_id = job_id
        self.policy = Policy.STOP
        self.steps: dict[str, StepState] = {}
        self.dependents: dict[str, list[str]] = {}
        self.options: dict[str, tuple[dict[str, Any], int]] = {}
        self.tasks: dict[str, asyncio.Task[StepState]] = {}
        # Finished step tasks, in the order they finished: O(1) per completion, whatever
        # the number of steps running (asyncio.wait over every task would be O(running)).
        self.done: asyncio.Queue[asyncio.Task[StepState]] = asyncio.Queue()
        #: Step name -> cluster faults in a row (the backoff before its next attempt).
        self.cluster_faults: dict[str, int] = {}

    async def run(self) -> None:
        job = await self.store.get_job(self.job_id)
        if job.status.terminal:
            return
        if job.status == JobStatus.PENDING:
            job = await self.store.decide_job(self.job_id, lambda j: rules.start_job(j, now_us()))
        self.policy = Policy(job.on_step_failure)
        self.steps = {s.name: s for s in job.steps}
        for s in job.steps:
            for dep in s.depends_on:
                self.dependents.setdefault(dep, []).append(s.name)
        self.options = await self.store.step_options(self.job_id)
        with tracing.span("stepwatch.job", job_id=self.job_id, definition=job.definition_name):
            try:
                await self._schedule()
            finally:
                await _cancel_all(self.tasks)

    async def _schedule(self) -> None:
        failed = next((s for s in self.steps.values() if s.status == StepStatus.FAILED), None)
        if failed is not None and self.policy == Policy.STOP:
            await self._stop(failed)
            return
        blocked = [s for s in self.steps.values() if s.status.terminal
                   and s.status != StepStatus.COMPLETED]
        await self._skip_dependents(blocked)
        for s in list(self.steps.values()):
            if s.status == StepStatus.RUNNING or rules.ready(s, self.steps):
                self._launch(s)
        while self.tasks:
            task = await self.done.get()
            step = task.result()
            name = step.name
            del self.tasks[name]
            self.steps[name] = step
            if step.status == StepStatus.FAILED and self.policy == Policy.STOP:
                await self._stop(step)
                return
            if step.status != StepStatus.COMPLETED:
                await self._skip_dependents([step])
            for d in self.dependents.get(name, ()):
                if rules.ready(self.steps[d], self.steps) and d not in self.tasks:
                    self._launch(self.steps[d])
        await self.store.decide_job(self.job_id, lambda j: rules.finish_job(j.steps, now_us()))

    async def _stop(self, failed: StepState) -> None:
        await _cancel_all(self.tasks)
        self.tasks.clear()
        await self.store.decide_job(self.job_id,
                                    lambda j: rules.stop_job(j.steps, failed, now_us()))

    async def _skip_dependents(self, blocked: Sequence[StepState]) -> None:
        """Steps that depend, directly or not, on a step that did not complete are SKIPPED."""
        layer = list(blocked)
        while layer:
            writes: dict[str, StepWrite] = {}
            for dep in layer:
                for name in self.dependents.get(dep.name, ()):
                    s = self.steps[name]
                    if s.status == StepStatus.PENDING and s.step_id not in writes:
                        writes[s.step_id] = StepWrite(s.step_id, s.attempt, _skip_for(dep))
            if not writes:
                return
            layer = await self.store.write_steps(self.job_id, list(writes.values()))
            for s in layer:
                self.steps[s.name] = s

    def _launch(self, step: StepState) -> None:
        task = asyncio.create_task(self._run_step(step), name=f"step-{step.name}")
        task.add_done_callback(self.done.put_nowait)
        self.tasks[step.name] = task

    async def _run_step(self, step: StepState) -> StepState:
        async with self.config.slots:
            return await self._run_attempts(step)

    async def _run_attempts(self, step: StepState) -> StepState:
        if step.status == StepStatus.PENDING:
            step = await self._write(step, lambda s: rules.start_attempt(s, now_us()))
        while True:
            # After a cluster fault the next attempt waits (exponential, capped): a scheduler
            # that is down is not asked again at once.
            await asyncio.sleep(rules.cluster_retry_delay(self.cluster_faults.get(step.name, 0)))
            with tracing.span("stepwatch.step_attempt", job_id=self.job_id, step_id=step.step_id,
                              step=step.name, type=step.type, attempt=step.attempt) as span:
                failure, batch = await self._attempt(step)
                step = await self._write(step, self._outcome(failure), batch)
                if span is not None:
                    span.set_attribute("stepwatch.status", step.status.name)
            if step.status.terminal:
                return step

    async def _kill_escaped(self, step: StepState) -> None:
        """A stopped attempt's commands that left their process group (setsid) die too."""
        await asyncio.to_thread(processes.kill_marked, self.config.owner, step.step_id)

    def _outcome(self, failure: Failure | None) -> Callable[[StepState], StepTransition]:
        if failure is None:
            return lambda s: rules.attempt_succeeded(s, now_us())
        return lambda s: rules.attempt_failed(s, failure, self.policy, now_us())

    async def _write(self, step: StepState, decide: Callable[[StepState], StepTransition],
                     progress: ProgressBatch | None = None) -> StepState:
        [written] = await self.store.write_steps(
            self.job_id, [StepWrite(step.step_id, step.attempt, decide, progress)])
        return written

    async def _attempt(self, step: StepState) -> tuple[Failure | None, ProgressBatch | None]:
        """One attempt: init, then children. (None, last batch) when it succeeded."""
        cfg = self.config
        step_type = cfg.step_types.get(step.type)
        if step_type is None:
            return rules.init_failed(f"step type {step.type!r} is not installed on this server"), None
        options, concurrency = self.options[step.step_id]
        init_output = InitOutput(cfg.log_cap)
        ctx = StepContext(step.job_id, step.name, options, cfg.workspace,
                          JobDocuments(self.store, step.job_id),
                          env={"STEPWATCH_OWNER": cfg.owner, "STEPWATCH_JOB": step.job_id,
                               "STEPWATCH_STEP": step.step_id,
                               "STEPWATCH_ATTEMPT": str(step.attempt)},
                          sink=init_output, env_allow=cfg.env_allow, run_as=cfg.run_as,
                          sandbox=cfg.sandbox, allow_hardlinks=cfg.allow_hardlinks,
                          may_start=cfg.may_start)
        recorder: ProgressRecorder | None = None
        outcome: Failure | None
        try:
            async with asyncio.timeout(step.timeout_seconds):
                try:
                    children = list(await step_type.init(ctx))
                except (StaleWrite, StoreUnavailable):
                    raise
                except Exception as exc:  # the handler's own failure, reported verbatim
                    return rules.init_failed(_text(exc)), _init_batch(step, init_output)
                if len(children) > cfg.limits.children:
                    return rules.init_failed(
                        f"{len(children)} children; a step may have at most "
                        f"{cfg.limits.children} (--max-children-per-step)"), None
                try:
                    await cfg.executor.prepare(ctx)
                except ExecutorUnavailable as exc:
                    self.cluster_faults[step.name] = self.cluster_faults.get(step.name, 0) + 1
                    return rules.cluster_failed(str(exc)), _init_batch(step, init_output)
                await self.store.start_children(step.step_id, step.attempt,
                                                [c.key for c in children], init_output.lines)
                recorder = ProgressRecorder(self.store, step.step_id, step.attempt,
                                            len(children), cfg.progress_interval, cfg.log_cap)
                ctx = dataclasses.replace(ctx, sink=recorder)
                recorder.start()
                await cfg.executor.run_children(step_type, ctx, children, recorder,
                                                step.max_child_failures, concurrency)
                outcome = rules.children_outcome(recorder.counts.failed, step.max_child_failures,
                                                 recorder.errors)
        except TimeoutError:
            await self._kill_escaped(step)
            outcome = rules.timed_out(step.timeout_seconds or 0)
        except StepFailed as exc:
            outcome = Failure(FailureReason.EXECUTION_FAILED, _text(exc))
        except ExecutorUnavailable as exc:  # e.g. the scheduler went away mid-attempt
            self.cluster_faults[step.name] = self.cluster_faults.get(step.name, 0) + 1
            return rules.cluster_failed(_text(exc)), (
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
                        await self.store.record_progress(batch)
            raise
        # Anything else is the orchestrator's own error, not the step's: the runner records
        # it as INTERNAL_ERROR (step code only runs in init and run_child, both caught above).
        self.cluster_faults.pop(step.name, None)
        return outcome, (await recorder.finish() if recorder is not None else None)


def _always() -> bool:
    return True


def _init_batch(step: StepState, output: InitOutput) -> ProgressBatch | None:
    """What a failed init logged, written with the attempt's end."""
    if not output.lines:
        return None
    return ProgressBatch(step.step_id, step.attempt, [], [], ChildCounts(), 0, output.lines)


def _skip_for(dep: StepState) -> Callable[[StepState], StepTransition]:
    return lambda s: rules.dependency_skipped(s, dep, now_us())


async def _cancel_all(tasks: Mapping[str, asyncio.Task[Any]]) -> None:
    for t in tasks.values():
        t.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
