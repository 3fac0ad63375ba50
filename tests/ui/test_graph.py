"""The graph and the attempt timeline, as data: tables and properties, no browser."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stepwatch.v1 import orchestrator_pb2 as pb
from ui_service import status_style
from ui_service.graph import AttemptLog, graph_options, levels, timeline_options


def step(name: str, index: int, status: int = pb.STEP_STATUS_PENDING, *deps: str) -> pb.Step:
    return pb.Step(name=name, index=index, status=status, depends_on=list(deps))


def test_levels_follow_the_longest_chain_of_dependencies() -> None:
    steps = [step("a", 0), step("b", 1, 1, "a"), step("c", 2, 1, "a", "b"), step("d", 3)]
    assert levels(steps) == {"a": 0, "b": 1, "c": 2, "d": 0}


def test_a_long_chain_needs_no_recursion() -> None:
    steps = [step(f"s{i}", i, 1, *([f"s{i - 1}"] if i else [])) for i in range(5000)]
    assert levels(steps)["s4999"] == 4999


@given(st.lists(st.sampled_from([v.number for v in pb.StepStatus.DESCRIPTOR.values]),
                min_size=1, max_size=30))
def test_each_node_has_its_steps_colour_and_status_name(statuses: list[int]) -> None:
    steps = [step(f"s{i}", i, s, *([f"s{i - 1}"] if i % 2 else [])) for i, s in enumerate(statuses)]
    nodes = graph_options(steps)["series"][0]["data"]  # type: ignore[index]
    for node, s in zip(nodes, steps, strict=True):
        assert node["name"] == s.name
        assert node["itemStyle"]["color"] == status_style.look(status_style.STEP, s.status).colour
        assert node["status"] == status_style.value_name(status_style.STEP, s.status)


def rec(attempt: int, status: int, start_s: float, end_s: float | None = None,
        failure: str = "") -> pb.Attempt:
    """One attempt as the server records it (Step.attempts)."""
    r = pb.Attempt(attempt=attempt, status=status)  # type: ignore[arg-type]
    r.started_at.FromMicroseconds(int(start_s * 1e6))
    if end_s is not None:
        r.finished_at.FromMicroseconds(int(end_s * 1e6))
    if failure:
        r.failure.CopyFrom(pb.Failure(reason=pb.FAILURE_REASON_EXECUTION_FAILED, message=failure))
    return r


def event(seq: int, at_s: float, name: str, attempt: int, status: int,
          *records: pb.Attempt) -> pb.JobEvent:
    s = pb.Step(name=name, attempt=attempt, status=status, attempts=list(records))
    ev = pb.JobEvent(seq=seq, step_changed=s)
    ev.emitted_at.FromMicroseconds(int(at_s * 1e6))
    return ev


def test_attempts_are_drawn_as_the_server_recorded_them() -> None:
    log = AttemptLog()
    R, F, C = pb.STEP_STATUS_RUNNING, pb.STEP_STATUS_FAILED, pb.STEP_STATUS_COMPLETED
    assert log.add([event(2, 10, "a", 1, R, rec(1, R, 10)), event(3, 10.5, "b", 1, R, rec(1, R, 10.5)),
                    event(4, 11, "a", 1, R, rec(1, R, 10))])  # progress of attempt 1: no new span
    assert log.add([event(5, 12, "a", 2, R, rec(1, F, 10, 12, "exit code 3"), rec(2, R, 12))])
    assert log.add([event(6, 13, "a", 2, C, rec(1, F, 10, 12, "exit code 3"), rec(2, C, 12, 13)),
                    event(7, 14, "b", 1, F, rec(1, F, 10.5, 14, "boom"))])
    assert not log.add([event(6, 13, "a", 2, C)])  # seen already
    a1, a2, b1 = log.attempts[("a", 1)], log.attempts[("a", 2)], log.attempts[("b", 1)]
    assert (a1.start_us, a1.end_us, a1.status) == (10_000_000, 12_000_000, F)
    assert "exit code 3" in a1.note
    assert (a2.start_us, a2.end_us, a2.status) == (12_000_000, 13_000_000, C)
    assert (b1.end_us, b1.status) == (14_000_000, F) and "boom" in b1.note
    opts = timeline_options(log, now_us=20_000_000)
    assert opts["yAxis"]["data"] == ["a #1", "b #1", "a #2"]  # type: ignore[index]
    spans = opts["series"][1]["data"]  # type: ignore[index]
    assert [s["value"] for s in spans] == [2.0, 3.5, 1.0]
    assert [s["itemStyle"]["color"] for s in spans] == [
        status_style.look(status_style.STEP, x).colour for x in (F, F, C)]
    assert opts["series"][0]["data"] == [0.0, 0.5, 2.0]  # type: ignore[index]


def test_nothing_is_derived_an_attempt_the_server_did_not_close_stays_running() -> None:
    """Events whose order suggests a retry, without a record saying so, draw nothing new."""
    log = AttemptLog()
    R = pb.STEP_STATUS_RUNNING
    log.add([event(2, 10, "a", 1, R, rec(1, R, 10)), event(3, 12, "a", 2, R)])
    assert list(log.attempts) == [("a", 1)]
    assert log.attempts[("a", 1)].end_us is None and log.attempts[("a", 1)].status == R


def test_a_running_attempt_reaches_now_and_a_pending_step_has_none() -> None:
    log = AttemptLog()
    log.add([event(2, 1, "a", 1, pb.STEP_STATUS_RUNNING, rec(1, pb.STEP_STATUS_RUNNING, 1)),
             event(3, 1, "p", 0, pb.STEP_STATUS_PENDING)])
    assert list(log.attempts) == [("a", 1)]
    spans = timeline_options(log, now_us=4_000_000)["series"][1]["data"]  # type: ignore[index]
    assert spans[0]["value"] == 3.0
