"""The outbox through the real engine and store: a delivery is committed with the status
that causes it, once per (subscription, job, event, step), matching each subscription's
filters; a retried attempt's failure is not a step failure, the step's last one is."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from orchestrator_service.statuses import JobStatus, StepStatus
from orchestrator_service.store import now_us
from orchestrator_service.webhooks import NotifyEvent, SubscriptionSpec
from tests.engine.conftest import DEADLINE, Harness

JOB = '''name = "mixed"
[policy]
on_step_failure = "{policy}"
[steps.ok]
type = "shell"
commands = ["true"]
[steps.flaky]
type = "shell"
max_attempts = 2
commands = ["exit 1"]
[steps.broken]
type = "shell"
commands = ["exit 2"]
[steps.after]
type = "shell"
depends = ["broken"]
commands = ["true"]
'''


async def subscribe(h: Harness, events: set[NotifyEvent], statuses: frozenset[JobStatus] = frozenset(),
                    definition: str = "") -> str:
    sub = await h.store.automation.create_subscription(
        SubscriptionSpec("https://hooks.example.com/x", frozenset(events), statuses, definition),
        "", now_us())
    return sub.subscription_id


@pytest.mark.parametrize("policy", ["continue", "stop"])
async def test_each_cause_is_queued_once_per_matching_subscription(harness: Harness,
                                                                   policy: str) -> None:
    everything = await subscribe(harness, {NotifyEvent.JOB_FINISHED, NotifyEvent.STEP_FAILED})
    failed_jobs = await subscribe(harness, {NotifyEvent.JOB_FINISHED},
                                  frozenset({JobStatus.FAILED}))
    other = await subscribe(harness, {NotifyEvent.JOB_FINISHED, NotifyEvent.STEP_FAILED},
                            definition="another")
    job = await harness.finish((await harness.submit(JOB.format(policy=policy))).job_id)
    failed_steps = {s.name for s in job.steps if s.status == StepStatus.FAILED}
    flaky = job.step("flaky")
    assert flaky.attempt == 2 or flaky.status != StepStatus.FAILED  # retried, then failed
    log = await harness.store.automation.list_deliveries("", job.job_id, 1000)
    seen = Counter((d.subscription_id, d.event, d.step_name) for d in log)
    assert max(seen.values()) == 1
    want = {(everything, NotifyEvent.JOB_FINISHED, "")}
    want |= {(everything, NotifyEvent.STEP_FAILED, name) for name in failed_steps}
    if job.status == JobStatus.FAILED:
        want.add((failed_jobs, NotifyEvent.JOB_FINISHED, ""))
    assert set(seen) == want and other not in {s for s, _, _ in seen}
    assert "broken" in failed_steps
    assert (job.status == JobStatus.FAILED) == (policy == "stop")


async def test_a_delivery_row_exists_exactly_when_its_status_does(harness: Harness) -> None:
    """Read together in one snapshot, at every moment a watcher could look: the terminal
    job header and its delivery appear in the same commit."""
    sub = await subscribe(harness, {NotifyEvent.JOB_FINISHED})
    job = await harness.submit('name = "q"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n')
    async with asyncio.timeout(DEADLINE):
        while True:
            state = await harness.store.reads.get_job(job.job_id)
            log = await harness.store.automation.list_deliveries(sub, job.job_id, 10)
            # Two snapshots, the status read first: a terminal status seen means its commit
            # is visible to the second read, and so is the delivery committed with it.
            if state.status.terminal:
                assert len(log) == 1
                break
    await harness.finish(job.job_id)
    assert len(await harness.store.automation.list_deliveries(sub, job.job_id, 10)) == 1
