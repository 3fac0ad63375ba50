"""Every row of the status rules table, through the real engine and a real SQLite file,
with children in-process and on a real Dask cluster (the same rules, counts and events)."""

from __future__ import annotations

import os
import uuid

import pytest

from orchestrator_service import rules
from orchestrator_service.statuses import FailureReason, JobStatus, StepStatus
from orchestrator_service.store import StaleWrite, StepWrite

from .conftest import Harness


@pytest.fixture
def harness(any_harness: Harness) -> Harness:
    return any_harness


def job(policy: str, *steps: str) -> str:
    return f'name = "t"\n[policy]\non_step_failure = "{policy}"\n' + "\n".join(steps)


def shell(name: str, *commands: str, extra: str = "") -> str:
    cmds = ", ".join(f'"{c}"' for c in commands)
    return f'[steps.{name}]\ntype = "shell"\ncommands = [{cmds}]\n{extra}\n'


async def test_init_raises_step_failed_init_failed_with_the_handlers_message(harness: Harness) -> None:
    j = await harness.submit(job("stop", '[steps.f]\ntype = "filter_tags"\ntags = ["architecture"]\n'))
    done = await harness.finish(j.job_id)
    f = done.step("f")
    assert f.status == StepStatus.FAILED
    assert f.failure.reason == FailureReason.INIT_FAILED
    assert f.failure.message == "no documents found matching tags: ['architecture']"
    assert done.status == JobStatus.FAILED  # policy stop


async def test_failed_children_within_tolerance_complete_with_the_count_visible(harness: Harness) -> None:
    j = await harness.submit(job("stop", shell("s", "true", "exit 1", "true",
                                               extra="max_child_failures = 1")))
    done = await harness.finish(j.job_id)
    s = done.step("s")
    assert s.status == StepStatus.COMPLETED and s.failure is None
    assert (s.children.total, s.children.completed, s.children.failed) == (3, 2, 1)
    assert done.status == JobStatus.COMPLETED


async def test_failed_children_over_tolerance_fail_the_step(harness: Harness) -> None:
    j = await harness.submit(job("stop", shell("s", "exit 1", "echo oops >&2; exit 2",
                                               extra="max_child_failures = 1\nconcurrency = 1")))
    done = await harness.finish(j.job_id)
    s = done.step("s")
    assert s.status == StepStatus.FAILED
    assert s.failure.reason == FailureReason.CHILD_FAILURES_EXCEEDED
    assert "2 children failed" in s.failure.message and "oops" in s.failure.message
    assert s.children.failed == 2


async def test_a_step_past_its_timeout_fails_and_its_children_are_stopped(harness: Harness) -> None:
    marker = f"stepwatch-timeout-{uuid.uuid4().hex}"
    j = await harness.submit(job("stop", shell("slow", f"sleep 30; echo {marker}", "sleep 30",
                                               extra="timeout = 0.5")))
    done = await harness.finish(j.job_id)
    s = done.step("slow")
    assert s.status == StepStatus.FAILED and s.failure.reason == FailureReason.TIMEOUT
    assert s.children.cancelled == 2 and s.children.running == 0
    assert not [p for p in os.popen("ps -eww -o args=").read().splitlines() if marker in p]


async def test_a_failed_attempt_with_attempts_left_stays_running(harness: Harness) -> None:
    # The first attempt fails (and leaves a marker); the second one succeeds.
    j = await harness.submit(job("stop", shell(
        "flaky", "test -f marker || { touch marker; echo first >&2; exit 1; }",
        extra="max_attempts = 3")))
    done = await harness.finish(j.job_id)
    s = done.step("flaky")
    assert s.status == StepStatus.COMPLETED and s.attempt == 2
    steps = [e.step for e in await harness.events(j.job_id) if e.step and e.step.name == "flaky"]
    retry = [x for x in steps if x.attempt == 2 and x.previous_attempt_failure is not None][0]
    assert retry.status == StepStatus.RUNNING
    assert retry.previous_attempt_failure.reason == FailureReason.CHILD_FAILURES_EXCEEDED
    assert "first" in retry.previous_attempt_failure.message
    assert StepStatus.FAILED not in {x.status for x in steps}


async def test_policy_stop_skips_the_rest_and_fails_the_job(harness: Harness) -> None:
    j = await harness.submit(job("stop", shell("bad", "exit 1"),
                                 shell("after", "true", extra='depends = ["bad"]'),
                                 shell("other", "sleep 30", extra='depends = []')))
    done = await harness.finish(j.job_id)
    assert done.step("bad").status == StepStatus.FAILED and not done.step("bad").tolerated
    assert done.step("after").status == StepStatus.SKIPPED
    assert done.step("after").failure.reason == FailureReason.JOB_STOPPED
    # A sibling that was running is stopped, also for JOB_STOPPED.
    assert done.step("other").status == StepStatus.CANCELLED
    assert done.step("other").failure.reason == FailureReason.JOB_STOPPED
    assert done.status == JobStatus.FAILED
    assert done.failure.reason == FailureReason.CHILD_FAILURES_EXCEEDED
    assert "'bad'" in done.failure.message


async def test_policy_continue_tolerates_skips_dependents_and_runs_the_others(harness: Harness) -> None:
    j = await harness.submit(job("continue", shell("bad", "exit 1"),
                                 shell("after", "true", extra='depends = ["bad"]'),
                                 shell("after_after", "true", extra='depends = ["after"]'),
                                 shell("other", "true")))
    done = await harness.finish(j.job_id)
    bad = done.step("bad")
    assert bad.status == StepStatus.FAILED and bad.tolerated
    for name in ("after", "after_after"):
        assert done.step(name).status == StepStatus.SKIPPED
        assert done.step(name).failure.reason == FailureReason.DEPENDENCY_FAILED
    assert done.step("other").status == StepStatus.COMPLETED
    assert done.status == JobStatus.COMPLETED_WITH_FAILURES
    assert done.step_counts.failed == 1 and done.step_counts.skipped == 2


async def test_all_steps_completed_completes_the_job(harness: Harness) -> None:
    (harness.workspace / "a.py").write_text("print('hi')\n")
    (harness.workspace / "pkg").mkdir()
    (harness.workspace / "pkg" / "b.md").write_text("# title\nsome words here\n")
    j = await harness.submit(job(
        "stop", '[steps.scan]\ntype = "scan_files"\ninclude = ["**/*"]\ntags = ["src"]\n',
        '[steps.sum]\ntype = "summarize"\ndepends = ["scan"]\n',
        '[steps.md]\ntype = "filter_tags"\ntags = ["md"]\ndepends = ["sum"]\n'))
    done = await harness.finish(j.job_id)
    assert [s.status for s in done.steps] == [StepStatus.COMPLETED] * 3
    assert done.status == JobStatus.COMPLETED and done.failure is None
    assert done.step("md").document_count == 1
    docs = {d.path: d for d in await harness.store.reads.documents(j.job_id)}
    assert docs["pkg/b.md"].tags == ("md", "pkg", "src")
    assert docs["pkg/b.md"].attrs["lines"] == 2 and docs["pkg/b.md"].attrs["words"] == 5


async def test_non_utf8_files_fail_their_child(harness: Harness) -> None:
    (harness.workspace / "a_ok.txt").write_text("fine\n")  # sorted first, and one at a time
    (harness.workspace / "b_bin.txt").write_bytes(b"\xff\xfe\x00bad")
    (harness.workspace / "c_later.txt").write_text("never summarized\n")
    j = await harness.submit(job(
        "continue", '[steps.scan]\ntype = "scan_files"\ninclude = ["*.txt"]\n',
        '[steps.sum]\ntype = "summarize"\ndepends = ["scan"]\nconcurrency = 1\n'))
    done = await harness.finish(j.job_id)
    s = done.step("sum")
    assert s.status == StepStatus.FAILED and "not UTF-8" in s.failure.message
    # Over its tolerance the step stops at once: the child after the failure never ran.
    assert (s.children.completed, s.children.failed, s.children.cancelled) == (1, 1, 1)


async def test_cancel_stops_running_steps_and_cancels_the_rest(harness: Harness) -> None:
    j = await harness.submit(job("stop", shell("fast", "true"),
                                 shell("slow", "sleep 30", extra='depends = ["fast"]'),
                                 shell("later", "true", extra='depends = ["slow"]')))
    await harness.until(j.job_id, lambda s: s.step("slow").children.running == 1)
    done = await harness.engine.cancel(j.job_id)
    assert done.status == JobStatus.CANCELLED
    assert done.step("fast").status == StepStatus.COMPLETED
    for name in ("slow", "later"):
        assert done.step(name).status == StepStatus.CANCELLED
        assert done.step(name).failure.reason == FailureReason.CANCELLED_BY_USER
    events = await harness.events(j.job_id)
    assert events[-1].ends_job and events[-1].job.status == JobStatus.CANCELLED


@pytest.mark.parametrize(("max_attempts", "expected"), [(1, StepStatus.FAILED), (2, StepStatus.COMPLETED)])
async def test_process_death_while_a_step_runs(harness: Harness, max_attempts: int,
                                               expected: StepStatus) -> None:
    cmd = "test -f marker || { touch marker; sleep 30; }"
    j = await harness.submit(job("continue", shell("s", cmd, extra=f"max_attempts = {max_attempts}"),
                                 shell("next", "true", extra='depends = ["s"]')))
    await harness.until(j.job_id, lambda s: s.step("s").children.running == 1)
    await harness.restart()
    done = await harness.finish(j.job_id)
    s = done.step("s")
    assert s.status == expected
    if expected == StepStatus.FAILED:
        assert s.failure.reason == FailureReason.ORCHESTRATOR_RESTARTED and s.tolerated
        assert done.step("next").status == StepStatus.SKIPPED
        assert done.status == JobStatus.COMPLETED_WITH_FAILURES
    else:
        assert s.attempt == 2 and done.status == JobStatus.COMPLETED
        steps = [e.step for e in await harness.events(j.job_id) if e.step and e.step.name == "s"]
        assert any(x.previous_attempt_failure and x.previous_attempt_failure.reason ==
                   FailureReason.ORCHESTRATOR_RESTARTED for x in steps)


async def test_the_store_refuses_to_move_a_terminal_status(harness: Harness) -> None:
    j = await harness.submit(job("stop", shell("s", "true")))
    done = await harness.finish(j.job_id)
    step_id = done.step("s").step_id
    s = done.step("s")
    with pytest.raises(StaleWrite):
        await harness.store.writes.write_steps(j.job_id, [StepWrite(step_id, s.attempt, lambda st: (
            rules.StepTransition.of(st, StepStatus.FAILED)))])
    with pytest.raises(StaleWrite):
        await harness.store.writes.decide_job(j.job_id, lambda _j: rules.Decision(
            job=rules.JobTransition(JobStatus.RUNNING, None, None, None)))
    after = await harness.store.reads.get_job(j.job_id)
    assert after == done  # nothing was written


async def test_every_status_transition_is_its_own_event_and_seqs_are_contiguous(
        harness: Harness) -> None:
    j = await harness.submit(job("continue", shell("a", "true"), shell("b", "exit 1"),
                                 shell("c", "true", extra='depends = ["b"]')))
    done = await harness.finish(j.job_id)
    events = await harness.events(j.job_id)
    assert [e.seq for e in events] == list(range(1, done.head_seq + 1))
    for name, path in (("a", [StepStatus.PENDING, StepStatus.RUNNING, StepStatus.COMPLETED]),
                       ("b", [StepStatus.PENDING, StepStatus.RUNNING, StepStatus.FAILED]),
                       ("c", [StepStatus.PENDING, StepStatus.SKIPPED])):
        seen = [e.step.status for e in events if e.step and e.step.name == name]
        assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == path
    assert events[-1].ends_job and [e for e in events if e.ends_job] == [events[-1]]


async def test_a_command_not_found_fails_the_whole_step_with_execution_failed(harness: Harness) -> None:
    j = await harness.submit(job("continue", shell(
        "s", "no-such-command-stepwatch", "sleep 30", extra="max_child_failures = 5")))
    done = await harness.finish(j.job_id)
    s = done.step("s")
    assert s.status == StepStatus.FAILED and s.tolerated
    assert s.failure.reason == FailureReason.EXECUTION_FAILED
    assert "command not found (exit code 127)" in s.failure.message
    assert s.children.cancelled == 1  # the other command was stopped, not awaited


async def test_a_slow_watcher_whose_buffer_overflows_still_gets_every_seq(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator_service import broker as broker_mod
    from orchestrator_service.broker import Broker
    from orchestrator_service.model import Event
    from orchestrator_service.watch import follow_job

    overflows = []
    push = broker_mod.Subscription.push

    def counting_push(self, event):  # type: ignore[no-untyped-def]
        push(self, event)
        if self._overflowed:
            overflows.append(event.seq)

    monkeypatch.setattr(broker_mod.Subscription, "push", counting_push)

    harness.broker = Broker(buffer=2)  # tiny: any burst overflows it
    harness.store.listeners.events = harness.broker.publish
    j = await harness.submit(job("continue", *(shell(f"s{i}", "true") for i in range(6))))
    stream = follow_job(harness.store, harness.broker, j.job_id, 1, 5.0)
    first = await anext(stream)  # subscribed; now fall behind while the job runs
    assert isinstance(first, Event) and first.seq == 2
    done = await harness.finish(j.job_id)
    seen = [first.seq] + [ev.seq async for ev in stream if isinstance(ev, Event)]
    assert seen == list(range(2, done.head_seq + 1))
    assert overflows, "the buffer must have overflowed for this test to mean anything"


async def test_a_job_left_pending_starts_at_the_next_start(harness: Harness) -> None:
    from orchestrator_service.definitions import parse_definition

    toml = job("stop", shell("s", "true"))
    # Created but never launched: as if the process died right after committing it.
    j, _ = await harness.store.writes.create_job(parse_definition(toml, harness.types), toml)
    await harness.restart()
    done = await harness.finish(j.job_id)
    assert done.status == JobStatus.COMPLETED and done.step("s").status == StepStatus.COMPLETED
