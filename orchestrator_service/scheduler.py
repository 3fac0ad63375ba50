"""The scheduler: every tick, fire the schedules that are due (any replica may).

The clock is a parameter (tests pass a fake one and call ``tick``); what is due is
decided by ``schedules.plan`` inside the store's firing transaction, so replicas ticking
at once start each (schedule, nominal time) once. A schedule whose definition is gone or
no longer valid records why (``last_error``) and passes its due run over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from .catalog import Catalog
from .definitions import DefinitionError, check_inputs
from .engine import Engine, JobAlreadyFinished
from .problems import Code, ServerError, text_of
from .schedules import Clock
from .store import StaleWrite, StoreUnavailable, now_us
from .store.scheduled import Fired, Firing

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

class Scheduler:
    def __init__(self, engine: Engine, catalog: Catalog, clock: Clock = now_us,
                 tick_s: float = 0.5,
                 on_fired: Callable[[int, int], None] | None = None) -> None:
        """``on_fired``: told, after each firing, how many runs started and were skipped."""
        self.on_fired = on_fired
        self.engine = engine
        self.store = engine.store
        self.catalog = catalog
        self.clock = clock
        self.tick_s = tick_s
        self._cancels: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreUnavailable as exc:
                log.warning("scheduler: storage unavailable (%s); trying again", exc)
            except Exception:  # a bug must not end the schedules for good
                log.exception("scheduler: a tick failed")
            await asyncio.sleep(self.tick_s)  # a period: what is due is read from the store

    async def tick(self) -> list[Fired]:
        """Fire every schedule due now; what each fired."""
        now = self.clock()
        fired = []
        for schedule in await self.store.automation.due_schedules(now):
            schedule_id = schedule.schedule_id
            firing = await asyncio.to_thread(self._firing, schedule.spec.definition_name,
                                             schedule.spec.inputs)
            try:
                result = await self.store.writes.fire_schedule(schedule_id, now, firing)
            except IntegrityError:  # another replica started that nominal time: it runs
                log.info("schedule %s: a due run was started elsewhere", schedule_id)
                continue
            self._started(schedule_id, result)
            if self.on_fired is not None:
                self.on_fired(len(result.jobs), result.skipped)
            fired.append(result)
        return fired

    async def trigger(self, schedule_id: str) -> Fired:
        """One run now, whatever is due or paused (TriggerSchedule)."""
        schedule = await self.store.automation.get_schedule(schedule_id)
        firing = await asyncio.to_thread(self._firing, schedule.spec.definition_name,
                                         schedule.spec.inputs)
        if firing.definition is None:
            raise _NotStartable(firing.error)
        result = await self.store.writes.fire_schedule(schedule_id, self.clock(), firing,
                                                       force=True)
        self._started(schedule_id, result)
        return result

    def _firing(self, name: str, inputs: dict[str, object]) -> Firing:
        """The catalog's definition as it is now, and the schedule's inputs checked by it."""
        try:
            entry = self.catalog.get(name)
            values = check_inputs(entry.definition, inputs)
            self.engine.check_paths(entry.definition)
        except (ServerError, DefinitionError) as exc:
            return Firing(None, error=text_of(exc)[:2000])
        return Firing(entry.definition, entry.source, values)

    def _started(self, schedule_id: str, fired: Fired) -> None:
        for job_id in fired.cancel:
            task = asyncio.create_task(self._cancel(job_id), name=f"cancel-previous-{job_id}")
            self._cancels.add(task)
            task.add_done_callback(self._cancels.discard)
        if fired.jobs:
            log.info("schedule %s: started %s", schedule_id,
                     ", ".join(f"{j.job_id} (nominal {j.nominal_time})" for j in fired.jobs))
        self.engine.start([j.job_id for j in fired.jobs])

    async def _cancel(self, job_id: str) -> None:
        with contextlib.suppress(JobAlreadyFinished, StaleWrite):
            await self.engine.cancel(job_id)

    async def stop(self) -> None:
        for t in list(self._cancels):
            t.cancel()
        await asyncio.gather(*self._cancels, return_exceptions=True)


class _NotStartable(ServerError):
    """The schedule's definition is gone from the catalog, or no longer valid."""

    code = Code.FAILED_PRECONDITION
