"""The status rules as pure functions, one table row per case."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_service import rules
from orchestrator_service.model import AttemptRecord, Failure, JobState, StepState
from orchestrator_service.statuses import ChildStatus, FailureReason, JobStatus, Policy, StepStatus


def mk_step(name: str, status: StepStatus, attempt: int = 1, max_attempts: int = 1,
            depends: tuple[str, ...] = ()) -> StepState:
    return StepState(step_id=f"id-{name}", job_id="j", index=0, name=name, type="shell",
                     depends_on=depends, status=status, max_attempts=max_attempts,
                     max_child_failures=0, timeout_seconds=None, created_at=0, attempt=attempt)


def mk_job(*steps: StepState, policy: Policy = Policy.STOP) -> JobState:
    return JobState(job_id="j", definition_name="d", description="", on_step_failure=policy.value,
                    status=JobStatus.RUNNING, created_at=0, steps=steps)


@pytest.mark.parametrize(("failed", "allowed", "reason"), [
    (0, 0, None), (1, 1, None), (5, 5, None),
    (1, 0, FailureReason.CHILD_FAILURES_EXCEEDED), (6, 5, FailureReason.CHILD_FAILURES_EXCEEDED),
])
def test_children_outcome(failed: int, allowed: int, reason: FailureReason | None) -> None:
    out = rules.children_outcome(failed, allowed, ["x: exit code 1"])
    assert (out.reason if out else None) == reason
    if out:
        assert f"{failed} {'child' if failed == 1 else 'children'} failed" in out.message
        assert "x: exit code 1" in out.message


@pytest.mark.parametrize(("attempt", "max_attempts", "policy", "status", "next_attempt", "tolerated"), [
    (1, 1, Policy.STOP, StepStatus.FAILED, 1, False),
    (1, 1, Policy.CONTINUE, StepStatus.FAILED, 1, True),
    (1, 3, Policy.CONTINUE, StepStatus.RUNNING, 2, False),
    (2, 3, Policy.STOP, StepStatus.RUNNING, 3, False),
    (3, 3, Policy.CONTINUE, StepStatus.FAILED, 3, True),
])
def test_attempt_failed_retries_while_attempts_remain(
        attempt: int, max_attempts: int, policy: Policy, status: StepStatus, next_attempt: int,
        tolerated: bool) -> None:
    why = Failure(FailureReason.EXECUTION_FAILED, "boom")
    step = mk_step("a", StepStatus.RUNNING, attempt, max_attempts)
    t = rules.attempt_failed(step, why, policy, 7)
    assert (t.step_id, t.status, t.attempt, t.tolerated) == ("id-a", status, next_attempt, tolerated)
    if status == StepStatus.RUNNING:
        assert t.previous_attempt_failure == why and t.failure is None and t.finished_at is None
    else:
        assert t.failure == why and t.finished_at == 7 and t.previous_attempt_failure is None


def test_start_and_success_of_an_attempt() -> None:
    started = rules.start_attempt(mk_step("a", StepStatus.PENDING, 0), 5)
    assert (started.status, started.attempt, started.started_at) == (StepStatus.RUNNING, 1, 5)
    retried = StepState(**{**mk_step("a", StepStatus.RUNNING, 2, 3).__dict__, "started_at": 5,
                           "previous_attempt_failure": Failure(FailureReason.TIMEOUT, "slow")})
    done = rules.attempt_succeeded(retried, 9)
    assert (done.status, done.attempt, done.started_at, done.finished_at) == (
        StepStatus.COMPLETED, 2, 5, 9)
    assert done.failure is None and done.previous_attempt_failure is None


@pytest.mark.parametrize(("attempt", "max_attempts", "status"), [
    (1, 1, StepStatus.FAILED), (1, 2, StepStatus.RUNNING)])
def test_interrupted_step(attempt: int, max_attempts: int, status: StepStatus) -> None:
    t = rules.interrupted(mk_step("a", StepStatus.RUNNING, attempt, max_attempts), Policy.STOP, 1)
    assert t.status == status
    why = t.failure or t.previous_attempt_failure
    assert why is not None and why.reason == FailureReason.ORCHESTRATOR_RESTARTED


def test_interrupted_job_touches_only_running_steps() -> None:
    job = mk_job(mk_step("a", StepStatus.RUNNING), mk_step("b", StepStatus.PENDING, 0),
                 mk_step("c", StepStatus.COMPLETED), policy=Policy.CONTINUE)
    d = rules.interrupted_job(job, 4)
    assert [(t.step_id, t.status, t.tolerated) for t in d.steps] == [
        ("id-a", StepStatus.FAILED, True)]
    assert d.job is None


def test_stop_policy_skips_pending_and_stops_running_steps() -> None:
    failed = mk_step("a", StepStatus.FAILED)
    failed = StepState(**{**failed.__dict__, "failure": Failure(FailureReason.TIMEOUT, "slow")})
    job = mk_job(failed, mk_step("b", StepStatus.RUNNING), mk_step("c", StepStatus.PENDING, 0),
                 mk_step("d", StepStatus.COMPLETED))
    d = rules.stop_job(job.steps, failed, 9)
    by = {t.step_id: t for t in d.steps}
    assert by["id-b"].status == StepStatus.CANCELLED
    assert by["id-c"].status == StepStatus.SKIPPED
    assert {t.failure.reason for t in d.steps if t.failure} == {FailureReason.JOB_STOPPED}
    assert set(by) == {"id-b", "id-c"}
    assert d.job is not None and d.job.status == JobStatus.FAILED and d.job.finished_at == 9
    assert d.job.failure == Failure(FailureReason.TIMEOUT, "step 'a': slow")


def test_cancel_touches_only_non_terminal_steps() -> None:
    job = mk_job(mk_step("a", StepStatus.COMPLETED), mk_step("b", StepStatus.RUNNING),
                 mk_step("c", StepStatus.PENDING, 0), mk_step("d", StepStatus.FAILED))
    d = rules.cancel(job, 3)
    assert {t.step_id for t in d.steps} == {"id-b", "id-c"}
    assert all(t.status == StepStatus.CANCELLED and t.failure is not None and
               t.failure.reason == FailureReason.CANCELLED_BY_USER for t in d.steps)
    assert d.job is not None and d.job.status == JobStatus.CANCELLED


def test_internal_error_fails_the_job_and_says_so() -> None:
    job = mk_job(mk_step("a", StepStatus.COMPLETED), mk_step("b", StepStatus.RUNNING),
                 mk_step("c", StepStatus.PENDING, 0))
    d = rules.internal_error(job.steps, "disk I/O error", 3)
    by = {t.step_id: t for t in d.steps}
    assert by["id-b"].status == StepStatus.FAILED and by["id-c"].status == StepStatus.SKIPPED
    assert by["id-b"].failure is not None
    assert by["id-b"].failure.reason == FailureReason.INTERNAL_ERROR
    assert d.job is not None and d.job.status == JobStatus.FAILED
    assert d.job.failure is not None and "disk I/O error" in d.job.failure.message


@pytest.mark.parametrize(("statuses", "expected"), [
    ([StepStatus.COMPLETED, StepStatus.COMPLETED], JobStatus.COMPLETED),
    ([StepStatus.COMPLETED, StepStatus.FAILED], JobStatus.COMPLETED_WITH_FAILURES),
    ([StepStatus.FAILED, StepStatus.SKIPPED], JobStatus.COMPLETED_WITH_FAILURES),
])
def test_finish_job(statuses: list[StepStatus], expected: JobStatus) -> None:
    d = rules.finish_job([mk_step(str(i), s) for i, s in enumerate(statuses)], 8)
    assert d.job is not None and d.job.status == expected and not d.steps
    assert (d.job.failure is None) == (expected == JobStatus.COMPLETED)


def test_finish_job_refuses_unfinished_steps() -> None:
    with pytest.raises(ValueError):
        rules.finish_job([mk_step("a", StepStatus.RUNNING)], 1)


def test_dependency_rules() -> None:
    a = mk_step("a", StepStatus.FAILED)
    b = mk_step("b", StepStatus.PENDING, 0, depends=("a",))
    c = mk_step("c", StepStatus.COMPLETED)
    d = mk_step("d", StepStatus.PENDING, 0, depends=("c",))
    by = {s.name: s for s in (a, b, c, d)}
    assert rules.blocking_dependency(b, by) is a and not rules.ready(b, by)
    assert rules.blocking_dependency(d, by) is None and rules.ready(d, by)
    skip = rules.dependency_skipped(b, a, 1)
    assert skip.status == StepStatus.SKIPPED and skip.failure is not None
    assert skip.failure.reason == FailureReason.DEPENDENCY_FAILED and "'a'" in skip.failure.message


@pytest.mark.parametrize("old", [s for s in StepStatus if s.terminal])
@pytest.mark.parametrize("new", list(StepStatus))
def test_a_terminal_step_status_never_changes(old: StepStatus, new: StepStatus) -> None:
    with pytest.raises(rules.TerminalStatusError):
        rules.check_step_transition(old, new)


@pytest.mark.parametrize("old", [s for s in JobStatus if s.terminal])
def test_a_terminal_job_status_never_changes(old: JobStatus) -> None:
    with pytest.raises(rules.TerminalStatusError):
        rules.check_job_transition(old, JobStatus.RUNNING)


def test_tolerated_only_under_continue() -> None:
    assert rules.tolerated(Policy.CONTINUE) and not rules.tolerated(Policy.STOP)


@pytest.mark.parametrize(("policy", "statuses", "expected"), [
    (Policy.STOP, [StepStatus.COMPLETED, StepStatus.COMPLETED], JobStatus.COMPLETED),
    (Policy.CONTINUE, [StepStatus.COMPLETED, StepStatus.FAILED], JobStatus.COMPLETED_WITH_FAILURES),
    (Policy.STOP, [StepStatus.COMPLETED, StepStatus.FAILED], JobStatus.FAILED),
])
def test_a_cancel_that_finds_every_step_finished_concludes_the_job(
        policy: Policy, statuses: list[StepStatus], expected: JobStatus) -> None:
    """Found by the property test under load: a cancel between the last step's end and the
    job's end must not make a job CANCELLED whose steps all completed."""
    job = mk_job(*(mk_step(str(i), s) for i, s in enumerate(statuses)), policy=policy)
    d = rules.cancel(job, 5)
    assert d.job is not None and d.job.status == expected and not d.steps


def _running_step(**kw: object) -> StepState:
    base = StepState("s", "j", 0, "s", "shell", (), StepStatus.PENDING, 3, 0, None, 1)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_attempt_records_follow_every_transition_of_a_retried_step() -> None:
    """Table: each transition's records, as the wire carries them (Step.attempts)."""
    boom = Failure(FailureReason.EXECUTION_FAILED, "boom")
    s0 = _running_step()
    t1 = rules.start_attempt(s0, 10)
    assert t1.attempts == (AttemptRecord(1, StepStatus.RUNNING, 10),)
    s1 = replace(s0, status=StepStatus.RUNNING, attempt=1, attempts=t1.attempts)
    t2 = rules.attempt_failed(s1, boom, Policy.STOP, 20)
    assert t2.attempts == (AttemptRecord(1, StepStatus.FAILED, 10, 20, boom),
                           AttemptRecord(2, StepStatus.RUNNING, 20))
    s2 = replace(s1, attempt=2, attempts=t2.attempts)
    t3 = rules.attempt_succeeded(s2, 30)
    assert t3.attempts[-1] == AttemptRecord(2, StepStatus.COMPLETED, 20, 30)
    t3b = rules.interrupted(s2, Policy.STOP, 25)
    assert t3b.attempts[-2].status == StepStatus.FAILED
    assert t3b.attempts[-2].failure is not None
    assert t3b.attempts[-2].failure.reason == FailureReason.ORCHESTRATOR_RESTARTED
    assert t3b.attempts[-1] == AttemptRecord(3, StepStatus.RUNNING, 25)
    last = replace(s2, attempt=3, attempts=t3b.attempts)
    t4 = rules.attempt_failed(last, boom, Policy.CONTINUE, 40)  # no attempts left
    assert t4.status == StepStatus.FAILED
    assert t4.attempts[-1] == AttemptRecord(3, StepStatus.FAILED, 25, 40, boom)
    skipped = rules.dependency_skipped(s0, replace(s0, name="dep", status=StepStatus.FAILED), 5)
    assert skipped.attempts == ()  # never ran: no attempt
    [cancelled] = rules.cancel(JobState("j", "d", "", "stop", JobStatus.RUNNING, 0, 1,
                                        steps=(s2,)), 50).steps
    assert cancelled.attempts[-1] == replace(t2.attempts[-1], status=StepStatus.CANCELLED,
                                             finished_at=50, failure=cancelled.failure)


@pytest.mark.parametrize("failed, tolerated, over", [(0, 0, False), (1, 0, True), (3, 3, False),
                                                      (4, 3, True)])
def test_over_tolerance_is_more_failures_than_allowed(failed: int, tolerated: int,
                                                      over: bool) -> None:
    assert rules.over_tolerance(failed, tolerated) is over
    assert (rules.children_outcome(failed, tolerated) is not None) is over


@pytest.mark.parametrize("faults, delay", [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)])
def test_after_cluster_faults_the_next_attempt_waits_exponentially_capped(
        faults: int, delay: float) -> None:
    assert rules.cluster_retry_delay(faults) == delay


def test_a_stored_child_reason_is_kept_and_none_means_execution_failed() -> None:
    assert rules.child_failure_reason(None) == FailureReason.EXECUTION_FAILED
    assert rules.child_failure_reason(int(FailureReason.TIMEOUT)) == FailureReason.TIMEOUT


def _by_name(*steps: StepState) -> dict[str, StepState]:
    return {s.name: s for s in steps}


@pytest.mark.parametrize(("policy", "stop"), [(Policy.STOP, True), (Policy.CONTINUE, False)])
def test_next_actions_at_the_start(policy: Policy, stop: bool) -> None:
    # a FAILED (blocks c), b RUNNING (resumed), c waits on a, d ready, e waits on b
    steps = _by_name(mk_step("a", StepStatus.FAILED),
                     mk_step("b", StepStatus.RUNNING),
                     mk_step("c", StepStatus.PENDING, 0, depends=("a",)),
                     mk_step("d", StepStatus.PENDING, 0),
                     mk_step("e", StepStatus.PENDING, 0, depends=("b",)))
    deps = {"a": ["c"], "b": ["e"]}
    act = rules.next_actions(steps, policy, None, deps, ())
    if stop:
        assert act == rules.NextActions(stop=steps["a"])
    else:
        assert act.stop is None and act.blocked == (steps["a"],) and act.launch == ("b", "d")


@pytest.mark.parametrize(("status", "policy", "stop", "blocked", "launch"), [
    (StepStatus.COMPLETED, Policy.STOP, False, False, ("y",)),
    (StepStatus.FAILED, Policy.STOP, True, False, ()),
    (StepStatus.FAILED, Policy.CONTINUE, False, True, ()),
    (StepStatus.CANCELLED, Policy.STOP, False, True, ()),
    (StepStatus.SKIPPED, Policy.CONTINUE, False, True, ()),
])
def test_next_actions_after_a_step_ended(status: StepStatus, policy: Policy, stop: bool,
                                         blocked: bool, launch: tuple[str, ...]) -> None:
    x = mk_step("x", status)
    steps = _by_name(x, mk_step("y", StepStatus.PENDING, 0, depends=("x",)),
                     mk_step("z", StepStatus.PENDING, 0, depends=("x", "w")),
                     mk_step("w", StepStatus.RUNNING))
    act = rules.next_actions(steps, policy, x, {"x": ["y", "z"]}, ("w",))
    assert (act.stop is x) == stop
    assert act.blocked == ((x,) if blocked else ())
    assert act.launch == launch  # z still waits for w


def test_next_actions_never_launches_a_step_already_running() -> None:
    x = mk_step("x", StepStatus.COMPLETED)
    steps = _by_name(x, mk_step("y", StepStatus.PENDING, 0, depends=("x",)))
    assert rules.next_actions(steps, Policy.STOP, x, {"x": ["y"]}, ("y",)).launch == ()


_STATUSES = st.sampled_from([StepStatus.PENDING, StepStatus.RUNNING, StepStatus.COMPLETED,
                              StepStatus.FAILED, StepStatus.SKIPPED])


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(2, 7))
def test_ready_after_a_completing_step_is_what_next_actions_launches_once_it_completed(
        data: st.DataObject, n: int) -> None:
    """The hand-over's question (jobrun._successor: which steps does x's end make ready,
    asked before that end is written) has the run loop's answer after it is written."""
    names = [f"s{i}" for i in range(n)]
    steps: dict[str, StepState] = {}
    dependents: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        deps = tuple(data.draw(st.lists(st.sampled_from(names[:i]), unique=True))) if i else ()
        steps[name] = mk_step(name, data.draw(_STATUSES), 0, depends=deps)
        for d in deps:
            dependents.setdefault(d, []).append(name)
    x = data.draw(st.sampled_from(names))
    steps[x] = replace(steps[x], status=StepStatus.RUNNING)
    running = data.draw(st.lists(st.sampled_from(names), unique=True))
    before = rules.ready_after(x, steps, dependents, running, completing=x)
    done = replace(steps[x], status=StepStatus.COMPLETED)
    after = rules.next_actions({**steps, x: done}, Policy.STOP, done, dependents, running)
    assert after.stop is None and after.launch == before


def test_to_skip_is_one_layer_of_pending_dependents_each_with_its_blocker() -> None:
    a = mk_step("a", StepStatus.FAILED)
    b = mk_step("b", StepStatus.PENDING, 0, depends=("a",))
    c = mk_step("c", StepStatus.PENDING, 0, depends=("b",))
    d = mk_step("d", StepStatus.COMPLETED, depends=("a",))
    steps = _by_name(a, b, c, d)
    deps = {"a": ["b", "d"], "b": ["c"]}
    assert rules.to_skip([a], steps, deps) == [(b, a)]  # d is not PENDING; c is the next layer
    assert rules.to_skip([a, a], steps, deps) == [(b, a)]  # each step once
    assert rules.to_skip([], steps, deps) == []


def test_a_carried_step_is_completed_from_its_original_without_failures() -> None:
    done = replace(mk_step("a", StepStatus.COMPLETED, attempt=2, max_attempts=2),
                   previous_attempt_failure=Failure(FailureReason.EXECUTION_FAILED, "x"))
    carried = rules.carried_step(done, "orig")
    assert carried.status == StepStatus.COMPLETED and carried.carried_from == "orig"
    assert carried.failure is None and carried.previous_attempt_failure is None
    assert carried.attempt == 2 and not carried.tolerated


@pytest.mark.parametrize(("status", "after"), [
    (ChildStatus.PENDING, ChildStatus.CANCELLED), (ChildStatus.RUNNING, ChildStatus.CANCELLED),
    (ChildStatus.COMPLETED, ChildStatus.COMPLETED), (ChildStatus.FAILED, ChildStatus.FAILED),
    (ChildStatus.CANCELLED, ChildStatus.CANCELLED),
])
def test_an_attempts_end_closes_out_only_unfinished_children(status: ChildStatus,
                                                             after: ChildStatus) -> None:
    assert rules.close_out_child(status) == after


def test_failures_built_from_what_raised() -> None:
    assert rules.child_ended_reason(None) is None
    assert rules.child_ended_reason("boom") == FailureReason.EXECUTION_FAILED
    assert rules.execution_failed("bad input") == Failure(FailureReason.EXECUTION_FAILED,
                                                          "bad input")
    assert rules.execution_failed("").message  # never an empty reason


def _failures(decision: rules.Decision) -> list[Failure]:
    out = [t.failure for t in decision.steps if t.failure is not None]
    if decision.job is not None and decision.job.failure is not None:
        out.append(decision.job.failure)
    return out


def test_no_failure_message_repeats_its_reason() -> None:
    """"Job stopped: job stopped: ..." reads as a stutter: a message says what the label
    does not (and counts are in words: "1 child", "2 steps")."""
    running, pending = mk_step("r", StepStatus.RUNNING), mk_step("p", StepStatus.PENDING)
    failed = mk_step("f", StepStatus.FAILED)
    decisions = [rules.stop_job([running, pending, failed], failed, 1),
                 rules.cancel(mk_job(running, pending), 1),
                 rules.internal_error([running, pending], "disk full", 1)]
    failures = [f for d in decisions for f in _failures(d)]
    failures += [rules.children_outcome(n, 0, ["x: exit code 1"]) for n in (1, 2)]
    assert len(failures) >= 8
    for f in failures:
        assert f is not None
        label = f.reason.name.replace("_", " ").lower()
        assert not f.message.lower().startswith(label), f
        assert "1 children" not in f.message and "1 steps" not in f.message, f
    assert rules.cancel(mk_job(running, pending), 1).job.failure.message == (  # type: ignore[union-attr]
        "1 step stopped, 1 step never started")
