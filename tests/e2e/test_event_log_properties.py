"""Property: for random DAGs of shell steps, the event log is exact for every reader.

(a) a watcher's seqs run contiguously from its snapshot to the head, no gap or repeat
(the snapshot stands for seqs 1..snapshot.seq, and the log from seq 1 is checked too);
(b) the snapshot plus the events equals the final GetJob;
(c) resuming from every k in 0..head gives exactly events k+1..head (k = 0: the snapshot at head);
(d) no step or job status leaves a terminal value;
(e) with random cancels and timeouts too: counts add up in every event, a terminal
step has no pending or running child, the final counts equal the child rows, and
nothing follows the job's terminal event.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator_service.server import Orchestrator, Settings
from stepwatch.client import Client
from stepwatch.errors import FailedPrecondition
from stepwatch.jobview import apply_event
from stepwatch.v1 import orchestrator_pb2 as pb
from tests.invariants import child_rows, job_problems, rows_problems, step_problems
from tests.postgres import PostgresCluster

TERMINAL_STEP = {pb.STEP_STATUS_COMPLETED, pb.STEP_STATUS_FAILED, pb.STEP_STATUS_SKIPPED,
                 pb.STEP_STATUS_CANCELLED}
TERMINAL_JOB = {pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_COMPLETED_WITH_FAILURES,
                pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED}


@st.composite
def definitions(draw: st.DrawFn) -> str:
    n = draw(st.integers(1, 5))
    policy = draw(st.sampled_from(["stop", "continue"]))
    lines = [f'name = "prop"\n[policy]\non_step_failure = "{policy}"']
    for i in range(n):
        commands = draw(st.lists(st.sampled_from(["true", "false", "sleep 0.05", "sleep 2"]),
                                 min_size=1, max_size=3))
        timeout = draw(st.sampled_from(["", "timeout = 0.4\n"]))
        depends = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=2)) if i else []
        lines.append(
            f"[steps.s{i}]\ntype = \"shell\"\n"
            f"commands = [{', '.join(repr(c).replace(chr(39), chr(34)) for c in commands)}]\n"
            f"depends = [{', '.join(f'{chr(34)}s{d}{chr(34)}' for d in depends)}]\n"
            f"{timeout}max_child_failures = {draw(st.integers(0, 2))}\n"
            f"max_attempts = {draw(st.integers(1, 2))}")
    return "\n".join(lines) + "\n"


def assert_terminal_values_stay(events: list[pb.JobEvent]) -> None:
    terminal: dict[str, int] = {}
    for e in events:
        if e.WhichOneof("change") == "step_changed":
            key, value, done = e.step_changed.step_id, e.step_changed.status, TERMINAL_STEP
        else:
            key, value, done = "job", e.job_changed.status, TERMINAL_JOB
        if key in terminal:
            assert value == terminal[key], f"{key} left terminal {terminal[key]} for {value}"
        elif value in done:
            terminal[key] = value


async def scenario(toml: str, workdir: Path, cancel_at: int | None, db_url: str | None = None,
                   ) -> None:
    """On a SQLite file in ``workdir``, or on the PostgreSQL database ``db_url``."""
    db: Path | str = db_url or workdir / "p.db"
    orch = Orchestrator(Settings(port=0, db_url=db_url or f"sqlite:///{db}", jobs_dir=None,
                                 workspace=workdir, heartbeat_s=1.0))
    port = await orch.start()
    try:
        async with Client(f"127.0.0.1:{port}") as client, asyncio.timeout(60):
            job = await client.submit(definition_toml=toml)
            live = []
            async for m in client.watch(job.job_id):
                live.append(m)
                if cancel_at is not None and m.WhichOneof("kind") == "event" and \
                        m.event.seq == cancel_at:
                    try:
                        await client.cancel(job.job_id)
                    except FailedPrecondition:
                        pass  # it finished first: a cancel of a finished job is refused
            final = await client.get_job(job.job_id)
            head = final.head_seq

            snap = live[0].snapshot
            assert live[0].WhichOneof("kind") == "snapshot" and snap.seq >= 1
            events = [m.event for m in live if m.WhichOneof("kind") == "event"]
            assert [e.seq for e in events] == list(range(snap.seq + 1, head + 1))  # (a)

            state = snap.job
            for e in events:
                state = apply_event(state, e)
            assert state == final  # (b)

            log = [m.event for m in [x async for x in client.watch(job.job_id, after_seq=1)]
                   if m.WhichOneof("kind") == "event"]
            assert [e.seq for e in log] == list(range(2, head + 1))
            assert log[snap.seq - 1:] == events
            for k in range(1, head + 1):  # (c)
                got = [m async for m in client.watch(job.job_id, after_seq=k)]
                assert [m.event.seq for m in got] == list(range(k + 1, head + 1))
            at_zero = [m async for m in client.watch(job.job_id, after_seq=0)]
            assert len(at_zero) == 1 and at_zero[0].snapshot.job == final

            assert_terminal_values_stay(log)  # (d)
            assert_terminal_values_stay(events)
            assert final.status in TERMINAL_JOB
            assert all(s.status in TERMINAL_STEP for s in final.steps)
            all_completed = all(s.status == pb.STEP_STATUS_COMPLETED for s in final.steps)
            assert (final.status == pb.JOB_STATUS_COMPLETED) == all_completed
            # (e)
            problems = [p for e in log if e.HasField("step_changed")
                        for p in step_problems(e.step_changed, f"seq {e.seq}")]
            problems += job_problems(final, "final")
            problems += rows_problems(final, child_rows(db), "final")
            assert not problems, "\n".join(problems)
            ends = [e.seq for e in log if e.HasField("job_changed")
                    and e.job_changed.status in TERMINAL_JOB]
            assert ends == [head], f"terminal events at {ends}, head {head}"
    finally:
        await orch.stop()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toml=definitions(), cancel_at=st.one_of(st.none(), st.integers(2, 12)))
def test_event_log_is_exact_for_random_dags(toml: str, cancel_at: int | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(scenario(toml, Path(d), cancel_at))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toml=definitions(), cancel_at=st.one_of(st.none(), st.integers(2, 12)))
def test_event_log_is_exact_for_random_dags_on_postgresql(postgres: PostgresCluster, toml: str,
                                                          cancel_at: int | None) -> None:
    """The same property on a real PostgreSQL (a database per example): the replica's
    leases, notifications and several writer connections are in the path."""
    url = postgres.new_database()
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(scenario(toml, Path(d), cancel_at, url))
