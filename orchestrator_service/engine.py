"""Runs jobs: schedules steps, runs their children, asks the rules, records changes.

The engine never writes a status itself: it asks ``rules`` what a situation
means and hands the answer to ``Store.apply``, which writes the rows and their
events in one transaction and refuses to move a terminal status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import rules
from .definitions import JobDefinition
from .model import Failure, JobState, StepState
from .progress import ProgressRecorder
from .rules import Changes
from .statuses import FailureReason, JobStatus, Policy, StepStatus
from .step_types.base import Child, Document, StepContext, StepFailed, StepType
from .store import Store, now_us

log = logging.getLogger(__name__)


class JobAlreadyFinished(Exception):
    def __init__(self, job: JobState) -> None:
        super().__init__(f"job {job.job_id} is already {job.status.name}")
        self.job = job


class _TooManyChildFailures(Exception):
    pass


class JobDocuments:
    """What a step sees of its job's documents."""

    def __init__(self, store: Store, job_id: str) -> None:
        self._store = store
        self._job_id = job_id

    async def documents(self, tags: Sequence[str] | None = None) -> list[Document]:
        return await self._store.documents(self._job_id, tags)


class Engine:
    def __init__(self, store: Store, step_types: Mapping[str, StepType], workspace: Path,
                 progress_interval: float = 0.1) -> None:
        self.store = store
        self.step_types = step_types
        self.workspace = workspace
        self.progress_interval = progress_interval
        self._runs: dict[str, asyncio.Task[None]] = {}

    # -- lifecycle -----------------------------------------------------------

    async def recover(self) -> None:
        """At start: interrupted steps get a new attempt or FAILED; unfinished jobs go on."""
        for job_id in await self.store.unfinished_jobs():
            await self.store.apply(job_id, _interrupted)
            self._launch(job_id)

    async def stop(self) -> None:
        """Stop running jobs without deciding anything: the next start recovers them."""
        tasks = list(self._runs.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- commands ------------------------------------------------------------

    async def submit(self, definition: JobDefinition, source_toml: str) -> JobState:
        job = await self.store.create_job(definition, source_toml)
        self._launch(job.job_id)
        return job

    async def cancel(self, job_id: str) -> JobState:
        job = await self.store.get_job(job_id)
        if job.status.terminal:
            raise JobAlreadyFinished(job)
        task = self._runs.get(job_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        def decide(current: JobState) -> Changes:
            if current.status.terminal:
                raise JobAlreadyFinished(current)
            return rules.cancel(current, now_us())

        return await self.store.apply(job_id, decide)

    async def wait(self, job_id: str) -> None:
        """Until the job's runner is done (for tests and benchmarks)."""
        task = self._runs.get(job_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    # -- running a job -------------------------------------------------------

    def _launch(self, job_id: str) -> None:
        task = asyncio.create_task(self._run_job(job_id), name=f"job-{job_id}")
        self._runs[job_id] = task
        task.add_done_callback(lambda t: self._finished(job_id, t))

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._runs.get(job_id) is task:
            del self._runs[job_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s runner crashed", job_id, exc_info=task.exception())

    async def _run_job(self, job_id: str) -> None:
        job = await self.store.get_job(job_id)
        if job.status == JobStatus.PENDING:
            job = await self.store.apply(job_id, _start_job)
        policy = Policy(job.on_step_failure)
        options = await self.store.step_options(job_id)
        tasks: dict[str, asyncio.Task[StepState]] = {}
        try:
            while True:
                job = await self.store.get_job(job_id)
                if job.status.terminal:
                    return
                by_name = {s.name: s for s in job.steps}
                failed = next((s for s in job.steps if s.status == StepStatus.FAILED), None)
                if failed is not None and policy == Policy.STOP:
                    await _cancel_all(tasks)
                    await self.store.apply(job_id, lambda j, f=failed: rules.stop_job(j, f, now_us()))
                    return
                skips = _dependency_skips(job.steps, by_name)
                if skips:
                    await self.store.apply(job_id, lambda _j, c=skips: Changes(steps=c))
                    continue
                for s in job.steps:
                    if s.step_id not in tasks and (
                        rules.ready(s, by_name) or s.status == StepStatus.RUNNING
                    ):
                        tasks[s.step_id] = asyncio.create_task(
                            self._run_step(s, policy, *options[s.step_id]), name=f"step-{s.name}")
                if not tasks:
                    await self.store.apply(job_id, lambda j: rules.finish_job(j, now_us()))
                    return
                done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
                for step_id in [k for k, t in tasks.items() if t in done]:
                    tasks.pop(step_id).result()
        finally:
            await _cancel_all(tasks)

    async def _run_step(self, step: StepState, policy: Policy, options: Mapping[str, Any],
                        concurrency: int) -> StepState:
        if step.status == StepStatus.PENDING:
            step = await self._update_step(step, {
                "status": StepStatus.RUNNING, "attempt": 1, "started_at": now_us()})
        while True:
            failure = await self._attempt(step, options, concurrency)
            if failure is None:
                return await self._update_step(step, {
                    "status": StepStatus.COMPLETED, "finished_at": now_us(),
                    "previous_attempt_failure": None})
            fields = rules.attempt_failure(step, failure, now_us())
            if fields["status"] == StepStatus.FAILED:
                fields["tolerated"] = rules.tolerated(policy)
            step = await self._update_step(step, fields)
            if step.status.terminal:
                return step

    async def _update_step(self, step: StepState, fields: dict[str, Any]) -> StepState:
        job = await self.store.apply(step.job_id, lambda _j: Changes(steps={step.step_id: fields}))
        return job.step(step.name)

    async def _attempt(self, step: StepState, options: Mapping[str, Any],
                       concurrency: int) -> Failure | None:
        """One attempt: init, then children. None when it succeeded, else why it failed."""
        step_type = self.step_types.get(step.type)
        if step_type is None:
            return rules.init_failed(f"step type {step.type!r} is not installed on this server")
        ctx = StepContext(step.job_id, step.name, options, self.workspace,
                          JobDocuments(self.store, step.job_id))
        recorder: ProgressRecorder | None = None
        try:
            async with asyncio.timeout(step.timeout_seconds):
                try:
                    children = list(await step_type.init(ctx))
                except Exception as exc:  # the handler's own failure, reported verbatim
                    return rules.init_failed(_text(exc))
                await self.store.start_children(step.step_id, step.attempt,
                                                [c.key for c in children])
                recorder = ProgressRecorder(self.store, step.step_id, step.attempt,
                                            len(children), self.progress_interval)
                recorder.start()
                await _run_children(step_type, ctx, children, recorder, step.max_child_failures,
                                    concurrency)
                return rules.children_outcome(recorder.counts.failed, step.max_child_failures,
                                              recorder.errors)
        except TimeoutError:
            return rules.timed_out(step.timeout_seconds or 0)
        except StepFailed as exc:
            return Failure(FailureReason.EXECUTION_FAILED, _text(exc))
        except _TooManyChildFailures:
            assert recorder is not None
            return rules.children_outcome(recorder.counts.failed, step.max_child_failures,
                                          recorder.errors)
        except Exception as exc:
            log.exception("step %s attempt %s failed", step.name, step.attempt)
            return Failure(FailureReason.EXECUTION_FAILED, _text(exc))
        finally:
            if recorder is not None:
                recorder.cancel_unfinished()
                await recorder.close()


async def _run_children(step_type: StepType, ctx: StepContext, children: list[Child],
                        recorder: ProgressRecorder, max_failures: int, concurrency: int) -> None:
    queue = iter(enumerate(children))

    async def worker() -> None:
        for i, child in queue:
            recorder.running(i)
            try:
                puts = await step_type.run_child(ctx, child)
            except StepFailed as exc:
                recorder.failed(i, f"{child.key}: {_text(exc)}")
                raise
            except Exception as exc:
                recorder.failed(i, f"{child.key}: {_text(exc)}")
                if recorder.counts.failed > max_failures:
                    raise _TooManyChildFailures from None
            else:
                recorder.completed(i, puts or ())

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(concurrency, len(children))):
                tg.create_task(worker())
    except* StepFailed as group:
        raise group.exceptions[0] from None
    except* _TooManyChildFailures:
        raise _TooManyChildFailures from None


async def _cancel_all(tasks: Mapping[str, asyncio.Task[Any]]) -> None:
    for t in tasks.values():
        t.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


def _dependency_skips(steps: Sequence[StepState],
                      by_name: dict[str, StepState]) -> dict[str, dict[str, Any]]:
    now = now_us()
    out = {}
    for s in steps:
        if s.status == StepStatus.PENDING and (dep := rules.blocking_dependency(s, by_name)):
            out[s.step_id] = rules.dependency_skip(dep, now)
    return out


def _start_job(job: JobState) -> Changes:
    if job.status != JobStatus.PENDING:
        return Changes()
    return Changes(job={"status": JobStatus.RUNNING, "started_at": now_us()})


def _interrupted(job: JobState) -> Changes:
    now = now_us()
    policy = Policy(job.on_step_failure)
    steps = {}
    for s in job.steps:
        if s.status == StepStatus.RUNNING:
            fields = rules.interrupted(s, now)
            if fields["status"] == StepStatus.FAILED:
                fields["tolerated"] = rules.tolerated(policy)
            steps[s.step_id] = fields
    return Changes(steps=steps)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
