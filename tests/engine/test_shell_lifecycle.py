"""A command never outlives its child, nor holds its step, nor costs memory for its output."""

from __future__ import annotations

import time

from orchestrator_service.processes import marked
from orchestrator_service.statuses import FailureReason, StepStatus
from tests.memory import peak_rss_growth

from .conftest import Harness


def job(commands: str, extra: str = "") -> str:
    return f'name = "t"\n[steps.a]\ntype = "shell"\ncommands = [{commands}]\n{extra}'


async def test_a_background_process_does_not_hold_the_step(harness: Harness) -> None:
    # The background sleep keeps the stderr pipe open: the step must not wait for it.
    started = time.monotonic()
    j = await harness.submit(job('"sleep 120 & echo started >&2; exit 0"'))
    done = await harness.finish(j.job_id)
    a = done.step("a")
    assert a.status == StepStatus.COMPLETED and time.monotonic() - started < 20
    assert not list(marked(harness.engine.config.owner, a.step_id))  # the sleep died with it


async def test_a_stopped_attempt_kills_what_left_its_process_group(harness: Harness) -> None:
    j = await harness.submit(job('"setsid sleep 120 & sleep 120"', "timeout = 0.5\n"))
    done = await harness.finish(j.job_id)
    a = done.step("a")
    assert a.status == StepStatus.FAILED and a.failure is not None
    assert a.failure.reason == FailureReason.TIMEOUT
    assert not list(marked(harness.engine.config.owner, a.step_id))


async def test_gigabytes_of_output_cost_kilobytes(harness: Harness) -> None:
    with peak_rss_growth() as growth:
        j = await harness.submit(job('"head -c 300000000 /dev/zero | tr \\"\\\\\\\\0\\" x >&2; exit 3"'))
        done = await harness.finish(j.job_id)
    a = done.step("a")
    assert a.status == StepStatus.FAILED and a.failure is not None
    assert "exit code 3" in a.failure.message and a.failure.message.endswith("x" * 50)
    assert growth[0] < 64 << 20, f"RSS grew {growth[0] >> 20} MiB for 300 MB of stderr"
