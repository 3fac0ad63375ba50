"""Runs jobs: the registry and lifecycle (``Engine``); one ``JobRun`` (jobrun.py) per running job.

The engine never decides a status: it asks ``rules`` and hands the typed answer
to the store, which writes rows and events in one transaction, fenced by the
attempt the write belongs to. A run keeps its steps as last written (each write
returns the stored step), so scheduling costs O(what changed), never a reread
of the whole job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from . import processes, rules
from .definitions import DefinitionError, JobDefinition, Violation, check_inputs, parse_definition
from .executors import Executor, InProcessExecutor
from .jobrun import EngineConfig, JobRun, RunConfig
from .leases import Claimed
from .model import JobState
from .problems import Code, ServerError, text_of
from .rules import Decision
from .slots import Slots
from .statuses import StepStatus
from .step_types.base import (
    OptionError,
    StepType,
)
from .store import (
    JobNotFound,
    LeaseLost,
    RequestKey,
    Rerun,
    StaleWrite,
    Store,
    StoreUnavailable,
    now_us,
)

__all__ = ["CancelNotConfirmed", "Engine", "JobAlreadyFinished", "JobNotFinished", "RunConfig"]

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


class Engine:
    """The registry of running jobs: submit, cancel, recover, stop."""

    def __init__(self, store: Store, step_types: Mapping[str, StepType], run: RunConfig,
                 executor: Executor | None = None) -> None:
        self.store = store
        # Replicas on one machine each mark their own commands: one never kills another's.
        self.config = EngineConfig(store, step_types, run, executor or InProcessExecutor(),
                                   Slots(run.max_running_steps),
                                   processes.owner_key(store.holding.marker(store.identity)),
                                   store.holding.fresh)
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
        if not self.store.holding.recovers_at_start:
            return  # replicas: jobs are taken over by the lease sweep (replicas.py), not here
        for job_id in await self.store.reads.unfinished_jobs():
            await self.store.writes.decide_job(job_id, lambda j: rules.interrupted_job(j, now_us()))
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
            await self.store.writes.decide_job(claimed.job_id,
                                        lambda j: rules.interrupted_job(j, now_us()))
        except StaleWrite as exc:  # lost again already, or finished meanwhile
            log.info("job %s: not taken over: %s", claimed.job_id, exc)
            return
        except (StoreUnavailable, JobNotFound) as exc:
            log.error("job %s: taking it over failed (%s); giving it back", claimed.job_id, exc)
            await self.store.holding.give_back(claimed.job_id, claimed.epoch)
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
                return await self.store.reads.get_job(job_id)
            except StoreUnavailable:
                if asyncio.get_running_loop().time() + pause > deadline:
                    raise
                log.warning("job %s: its read failed during takeover; trying again", job_id)
            await asyncio.sleep(pause)  # backoff between reads of a faulty database
            pause = min(1.0, pause * 2)

    def abandon(self, job_id: str) -> None:
        """This replica lost the job's lease: stop its runner and commands, decide nothing
        (the new owner decides; our late writes would be refused anyway)."""
        self.store.holding.drop(job_id)
        task = self._runs.get(job_id)
        if task is not None:
            log.warning("job %s: lease lost; stopping its runner and commands here", job_id)
            task.cancel()

    def carry_out_cancel(self, job_id: str) -> None:
        """A CancelJob received by another replica, for a job this one runs."""
        if not self.store.holding.runs_here(job_id) or job_id in self._cancelling:
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
                     request: RequestKey | None = None, source: str = "inline",
                     inputs: Mapping[str, Any] | None = None) -> JobState:
        """A new job, started; with a request key seen within a day, that job instead.
        ``inputs``: the values given (InvalidInputs names every one the definition refuses)."""
        values = check_inputs(definition, inputs or {})
        await asyncio.to_thread(self.check_paths, definition)
        job, created = await self.store.writes.create_job(definition, source_toml, request, source,
                                                          inputs=values)
        if created:
            self._launch(job.job_id)
        return job

    def start(self, job_ids: Sequence[str]) -> None:
        """Run jobs this process created and holds (a schedule's)."""
        for job_id in job_ids:
            self._launch(job_id)

    def check_paths(self, definition: JobDefinition) -> None:
        """Path options that lead out of the workspace are refused before anything runs."""
        violations = []
        for step in definition.steps:
            step_type = self.config.step_types.get(step.type)
            try:
                if step_type is not None:
                    step_type.check_paths(step.options, self.config.run.workspace)
            except OptionError as exc:
                violations.append(Violation(f"steps.{step.name}.{exc.key}", exc.message))
        if violations:
            raise DefinitionError(violations)

    async def rerun(self, job_id: str, failed_only: bool, request: RequestKey | None = None,
                    may_run_inline: bool = True,
                    inputs: Mapping[str, Any] | None = None) -> JobState:
        """A finished job again, as a new job; failed-only carries its COMPLETED steps over.
        An inline definition runs again only for a caller who may submit one."""
        original = await self.store.reads.get_job(job_id)
        text, source = await self.store.reads.definition_text(job_id)
        if source != "catalog" and not may_run_inline:
            raise InlineRerunRefused(job_id)
        if not original.status.terminal:
            raise JobNotFinished(original)
        definition = await asyncio.to_thread(parse_definition, text, self.config.step_types,
                                             self.config.run.limits)
        # The original's inputs, with any given in their place.
        values = check_inputs(definition, {**dict(original.inputs), **(inputs or {})})
        await asyncio.to_thread(self.check_paths, definition)
        carried = rules.rerun_carries(original, failed_only)
        job, created = await self.store.writes.create_job(
            definition, text, request, source,
            Rerun(job_id, {s.name: s for s in original.steps if s.name in carried}), values)
        if created:
            self._launch(job.job_id)
        return job

    async def cancel(self, job_id: str) -> JobState:
        self.store.health.require_available()  # before stopping anything: the decision must be written
        job = await self.store.reads.get_job(job_id)
        if job.status.terminal:
            raise JobAlreadyFinished(job)
        if not self.store.holding.runs_here(job_id):
            claimed = await self.store.holding.request_cancel(job_id)
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

        return await self.store.writes.decide_job(job_id, decide)

    async def _await_remote_cancel(self, job_id: str) -> JobState:
        """The owner cancels on the notification (or its successor at takeover): wait for the
        job's terminal status, reading the store with a growing pause, within a deadline."""
        pause = 0.02
        try:
            async with asyncio.timeout(self.remote_cancel_s):
                while True:
                    job = await self.store.reads.get_job(job_id)
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
        if job.status.terminal or not self.store.holding.runs_here(job_id):
            log.info("job %s: runner stopped: %s", job_id, exc)
            return
        if restarts >= MAX_RUNNER_RESTARTS:
            await self._record_internal_error(job_id, exc)
            return
        log.warning("job %s: a write was refused (%s) though the job is still %s: recovering "
                    "its steps and going on", job_id, exc, job.status.name)
        try:
            await self.store.writes.decide_job(job_id, lambda j: rules.interrupted_job(j, now_us()))
        except StaleWrite:
            return
        self._launch(job_id, restarts + 1)

    async def _record_internal_error(self, job_id: str, exc: Exception) -> None:
        message = text_of(exc) if isinstance(exc, StoreUnavailable) else (
            f"{type(exc).__name__}: {text_of(exc)}")

        def decide(job: JobState) -> Decision:
            if job.status.terminal:
                return Decision()
            return rules.internal_error(job.steps, message[:500], now_us())

        try:
            await self.store.writes.decide_job(job_id, decide)
        except Exception:
            log.exception("job %s: could not record its internal error either; the next start "
                          "recovers it", job_id)


