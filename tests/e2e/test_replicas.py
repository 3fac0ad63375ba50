"""Several orchestrator processes on one real PostgreSQL, driven as an operator would.

Commands append a line (job, step, attempt, child, replica, start/end) to a file:
each child attempt runs exactly once, never two attempts of a step at once;
watchers anywhere see every event live; a cancel reaches the owner; a SIGKILLed
replica's job is finished by another within 1.5 leases; replicas starting
together migrate one at a time; a password with '%' and '@' works.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from orchestrator_service import processes
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.postgres import PASSWORD_USER, PostgresCluster
from tests.procs import REPO, Orchestrator, free_port, kill_process_groups_matching

# Run alone (make test's second pass): takeovers and cancels are timed against the wall clock.
pytestmark = pytest.mark.serial

LEASE_S = 4.0
DEADLINE = 60.0
TERMINAL = {pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_COMPLETED_WITH_FAILURES,
            pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED}
LINE = re.compile(r"^(\w+) (\w+) (\d+) c(\d+) (\S+) (start|end) (\d+)$")


def replica(url: str, workspace: Path, lease: float = LEASE_S,
            extra: list[str] | None = None) -> Orchestrator:
    return Orchestrator(url, workspace=workspace, heartbeat=0.5,
                        extra=["--lease-seconds", str(lease), *(extra or [])])


@pytest.fixture
def stop_all() -> Iterator[list[Orchestrator]]:
    started: list[Orchestrator] = []
    yield started
    for r in started:
        r.stop()


def stub(r: Orchestrator) -> pb_grpc.OrchestratorServiceStub:
    return pb_grpc.OrchestratorServiceStub(grpc.insecure_channel(r.target))


def command(ledger: Path, child: int, body: str = "sleep 0.05") -> str:
    """A command that says, at its start and end, which child attempt ran where."""
    tag = f'$STEPWATCH_JOB $STEPWATCH_STEP $STEPWATCH_ATTEMPT c{child} $STEPWATCH_OWNER'
    return (f'echo "{tag} start $(date +%s%N)" >> {ledger}; {body}; '
            f'echo "{tag} end $(date +%s%N)" >> {ledger}')


def definition(name: str, steps: dict[str, list[str]], extra: str = "") -> str:
    out = [f'name = "{name}"']
    prev = None
    for step, commands in steps.items():
        quoted = ", ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in commands)
        out.append(f"[steps.{step}]\ntype = \"shell\"\ncommands = [{quoted}]\n{extra}"
                   + (f'depends = ["{prev}"]\n' if prev else ""))
        prev = step
    return "\n".join(out) + "\n"


def watch_to_end(s: pb_grpc.OrchestratorServiceStub, job_id: str,
                 timeout: float = DEADLINE) -> list[pb.WatchJobResponse]:
    return list(s.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=timeout))


def ledger_lines(ledger: Path) -> list[re.Match[str]]:
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    matched = [LINE.match(line) for line in lines]
    assert all(matched), lines
    return [m for m in matched if m]


def assert_each_child_attempt_ran_once(ledger: Path) -> None:
    lines = ledger_lines(ledger)
    starts = Counter((m[1], m[2], m[3], m[4]) for m in lines if m[6] == "start")
    ends = Counter((m[1], m[2], m[3], m[4]) for m in lines if m[6] == "end")
    assert [k for k, n in starts.items() if n > 1] == [], "a child attempt ran twice"
    assert [k for k, n in ends.items() if n > 1] == []
    # Never two attempts of one step at once: attempt n+1 starts after attempt n's last line.
    spans: dict[tuple[str, str, str], list[int]] = {}
    for m in lines:
        spans.setdefault((m[1], m[2], m[3]), []).append(int(m[7]))
    by_step: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for (job, step, attempt), times in spans.items():
        by_step.setdefault((job, step), []).append((int(attempt), min(times), max(times)))
    for key, attempts in by_step.items():
        attempts.sort()
        for (a1, _, end1), (a2, start2, _) in zip(attempts, attempts[1:], strict=False):
            assert end1 < start2, f"{key}: attempt {a2} started before attempt {a1} ended"


@pytest.mark.parametrize("n", [2, 3])
def test_jobs_on_every_replica_run_each_child_attempt_once(
        n: int, pg_url: str, tmp_path: Path, stop_all: list[Orchestrator]) -> None:
    stop_all += [replica(pg_url, tmp_path) for _ in range(n)]
    ledger = tmp_path / "ledger"
    toml = definition("spread", {"a": [command(ledger, i) for i in range(4)],
                                 "b": [command(ledger, i) for i in range(2)]})
    stubs = [stub(r) for r in stop_all]
    jobs = [stubs[i % n].SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=30).job
            for i in range(4 * n)]
    for i, job in enumerate(jobs):  # each watched on a replica that did not create it
        watch_to_end(stubs[(i + 1) % n], job.job_id)
    finals = [stubs[0].GetJob(pb.GetJobRequest(job_id=j.job_id), timeout=30).job for j in jobs]
    assert [pb.JobStatus.Name(j.status) for j in finals] == ["JOB_STATUS_COMPLETED"] * len(jobs)
    assert_each_child_attempt_ran_once(ledger)
    lines = ledger_lines(ledger)
    assert len({(m[1], m[2], m[4]) for m in lines}) == len(jobs) * 6
    assert len({m[5] for m in lines}) == n  # every replica ran commands


def test_a_watcher_on_another_replica_sees_every_event_live(
        pg_url: str, tmp_path: Path, stop_all: list[Orchestrator]) -> None:
    stop_all += [replica(pg_url, tmp_path) for _ in range(2)]
    a, b = (stub(r) for r in stop_all)
    toml = definition("live", {f"s{i}": ["sleep 0.2"] for i in range(5)})
    job = a.SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=30).job
    got = watch_to_end(b, job.job_id)
    assert got[0].WhichOneof("kind") == "snapshot"
    snap = got[0].snapshot
    assert snap.job.status not in TERMINAL  # what follows was streamed live
    seqs = [m.event.seq for m in got if m.WhichOneof("kind") == "event"]
    final = a.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=30).job
    assert seqs == list(range(snap.seq + 1, final.head_seq + 1))
    assert final.status == pb.JOB_STATUS_COMPLETED
    assert got[-1].event.job_changed.status == pb.JOB_STATUS_COMPLETED


def test_watch_jobs_on_another_replica_shows_new_jobs_and_their_end(
        pg_url: str, tmp_path: Path, stop_all: list[Orchestrator]) -> None:
    stop_all += [replica(pg_url, tmp_path) for _ in range(2)]
    a, b = (stub(r) for r in stop_all)
    stream = b.WatchJobs(pb.WatchJobsRequest(), timeout=DEADLINE)
    first = next(stream)
    assert first.WhichOneof("kind") == "snapshot"
    job = a.SubmitJob(pb.SubmitJobRequest(definition_toml=definition("feed", {"s": ["sleep 0.3"]})),
                      timeout=30).job
    seen = []
    for m in stream:
        if m.WhichOneof("kind") == "job_changed" and m.job_changed.job_id == job.job_id:
            seen.append(m.job_changed.status)
            if m.job_changed.status in TERMINAL:
                break
    stream.cancel()
    assert seen[0] != pb.JOB_STATUS_COMPLETED and seen[-1] == pb.JOB_STATUS_COMPLETED


def test_cancel_on_another_replica_stops_the_owners_command_within_2_s(
        pg_url: str, tmp_path: Path, stop_all: list[Orchestrator]) -> None:
    stop_all += [replica(pg_url, tmp_path) for _ in range(2)]
    a, b = (stub(r) for r in stop_all)
    job = a.SubmitJob(pb.SubmitJobRequest(definition_toml=definition("long", {"s": ["sleep 30"]})),
                      timeout=30).job
    step_id = job.steps[0].step_id
    deadline = time.monotonic() + DEADLINE
    while not list(processes.marked(None, step_id)):  # the owner's `sleep 30` is running
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.02)
    started = time.monotonic()
    cancelled = b.CancelJob(pb.CancelJobRequest(job_id=job.job_id), timeout=30).job
    assert cancelled.status == pb.JOB_STATUS_CANCELLED
    while list(processes.marked(None, step_id)):
        assert time.monotonic() - started < 2.0, "the owner's command still runs 2 s after cancel"
        time.sleep(0.02)
    for s in (a, b):
        final = s.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=30).job
        assert final.status == pb.JOB_STATUS_CANCELLED
        assert final.steps[0].status == pb.STEP_STATUS_CANCELLED


def test_a_killed_replicas_job_is_finished_by_another_within_1_5_leases(
        pg_url: str, tmp_path: Path, stop_all: list[Orchestrator]) -> None:
    metrics_port = free_port()
    stop_all += [replica(pg_url, tmp_path),
                 replica(pg_url, tmp_path, extra=["--metrics-port", str(metrics_port)])]
    a_proc = stop_all[0]
    a, b = (stub(r) for r in stop_all)
    ledger = tmp_path / "ledger"
    # Attempt 1 hangs (the replica dies under it); attempt 2 finishes at once.
    body = 'if [ "$STEPWATCH_ATTEMPT" = 1 ]; then sleep 30; fi'
    toml = definition("takeover", {"first": [command(ledger, 0)],
                                   "hang": [command(ledger, 0, body), command(ledger, 1)],
                                   "after": [command(ledger, 0)]}, extra="max_attempts = 2\n")
    job = a.SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=30).job
    deadline = time.monotonic() + DEADLINE
    while not any(m[2] == job.steps[1].step_id and m[6] == "start" for m in ledger_lines(ledger)):
        assert time.monotonic() < deadline, "step `hang` never started"
        time.sleep(0.02)
    a_proc.stop(signal.SIGKILL)
    killed = time.monotonic()
    watched = watch_to_end(b, job.job_id)
    took = time.monotonic() - killed
    final = b.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=30).job
    assert final.status == pb.JOB_STATUS_COMPLETED, final
    assert took <= 1.5 * LEASE_S, (f"finished {took:.1f} s after the kill (lease {LEASE_S} s):\n"
                                   f"{stop_all[1].output[-3000:]}")
    hang = final.steps[1]
    assert hang.attempt == 2
    # The log: contiguous, its terminal event last, nothing after it.
    log = [m.event for m in b.WatchJob(pb.WatchJobRequest(job_id=job.job_id, after_seq=1),
                                       timeout=30) if m.WhichOneof("kind") == "event"]
    retry = [e.step_changed for e in log if e.HasField("step_changed")
             and e.step_changed.step_id == hang.step_id and e.step_changed.attempt == 2]
    assert retry[0].previous_attempt_failure.reason == pb.FAILURE_REASON_ORCHESTRATOR_RESTARTED
    assert [e.seq for e in log] == list(range(2, final.head_seq + 1))
    ends = [e.seq for e in log if e.HasField("job_changed") and e.job_changed.status in TERMINAL]
    assert ends == [final.head_seq]
    assert watched[-1].event.seq == final.head_seq
    assert_each_child_attempt_ran_once(ledger)
    owners = {m[5] for m in ledger_lines(ledger) if m[2] == hang.step_id}
    assert len(owners) == 2  # attempt 1 on A, attempt 2 on B
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    assert "stepwatch_lease_takeovers_total 1.0" in scraped.read().decode()
    kill_process_groups_matching(str(ledger))


def test_three_replicas_starting_together_on_an_empty_database(
        postgres: PostgresCluster, tmp_path: Path) -> None:
    for _ in range(5):
        url = postgres.new_database()
        with ThreadPoolExecutor(3) as pool:
            started = list(pool.map(_try_replica, [url] * 3, [tmp_path] * 3))
        try:
            errors = [r for r in started if isinstance(r, Exception)]
            assert not errors, errors
            for r in started:
                assert isinstance(r, Orchestrator)
                job = stub(r).SubmitJob(pb.SubmitJobRequest(
                    definition_toml=definition("up", {"s": ["true"]})), timeout=30).job
                assert watch_to_end(stub(r), job.job_id)[-1].event.job_changed.status == \
                    pb.JOB_STATUS_COMPLETED
        finally:
            for r in started:
                if isinstance(r, Orchestrator):
                    r.stop()


def _try_replica(url: str, workspace: Path) -> Orchestrator | Exception:
    try:
        return replica(url, workspace)
    except Exception as exc:  # reported by the test, with the process's output
        return exc


def test_a_password_with_percent_and_at_signs_in_the_url(
        postgres: PostgresCluster, tmp_path: Path, stop_all: list[Orchestrator]) -> None:
    database = postgres.new_database().rsplit("/", 1)[1]
    postgres.sql(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD 'p@ss%40w'")
    postgres.sql(f"ALTER DATABASE {database} OWNER TO {PASSWORD_USER}")
    postgres.sql(f"GRANT ALL ON SCHEMA public TO {PASSWORD_USER}", database)
    url = postgres.url(database, PASSWORD_USER, "p%40ss%2540w")
    migrate = subprocess.run([str(Path(sys.executable).with_name("stepwatch")), "migrate",
                              "--db-url", url], capture_output=True, text=True, cwd=REPO,
                             timeout=60)
    assert migrate.returncode == 0, migrate.stderr
    assert "schema is at head" in migrate.stdout
    wrong = subprocess.run([str(Path(sys.executable).with_name("stepwatch")), "migrate",
                            "--db-url", postgres.url(database, PASSWORD_USER, "nope")],
                           capture_output=True, text=True, cwd=REPO, timeout=60)
    assert wrong.returncode == 2 and "password authentication failed" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    refused = subprocess.run([sys.executable, "-m", "orchestrator_service", "--port", "0",
                              "--db-url", postgres.url(database, PASSWORD_USER, "nope")],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert refused.returncode == 2 and "password authentication failed" in refused.stderr
    assert "Traceback" not in refused.stderr and "nope" not in refused.stderr
    stop_all.append(replica(url, tmp_path))
    s = stub(stop_all[0])
    job = s.SubmitJob(pb.SubmitJobRequest(definition_toml=definition("pw", {"s": ["true"]})),
                      timeout=30).job
    assert watch_to_end(s, job.job_id)[-1].event.job_changed.status == pb.JOB_STATUS_COMPLETED




def test_a_paused_replica_loses_its_job_and_its_late_writes_are_refused(
        pg_url: str, tmp_path: Path, stop_all: list[Orchestrator]) -> None:
    """SIGSTOP (a long GC pause, a frozen VM) past the lease: B takes the job over; when A
    wakes, its renewal says the lease is lost, it stops its runner and writes nothing more."""
    stop_all += [replica(pg_url, tmp_path, lease=2.0) for _ in range(2)]
    a_proc, b_proc = stop_all
    a, b = (stub(r) for r in stop_all)
    ledger = tmp_path / "ledger"
    body = 'if [ "$STEPWATCH_ATTEMPT" = 1 ]; then sleep 30; fi'
    toml = definition("paused", {"s": [command(ledger, 0, body)]}, extra="max_attempts = 2\n")
    job = a.SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=30).job
    deadline = time.monotonic() + DEADLINE
    while not any(m[6] == "start" for m in ledger_lines(ledger)):
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.02)
    a_proc.popen.send_signal(signal.SIGSTOP)
    try:
        watched = watch_to_end(b, job.job_id)  # B takes it over and finishes it
    finally:
        a_proc.popen.send_signal(signal.SIGCONT)
    assert watched[-1].event.job_changed.status == pb.JOB_STATUS_COMPLETED
    final = b.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=30).job
    a_proc.wait_for(re.compile(r"lease lost|run by another replica"), timeout=30)
    # A is awake and has noticed; its view of the job is B's, and nothing was appended after.
    again = a.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=30).job
    assert again == final
    log = [m.event for m in a.WatchJob(pb.WatchJobRequest(job_id=job.job_id, after_seq=1),
                                       timeout=30) if m.WhichOneof("kind") == "event"]
    assert [e.seq for e in log] == list(range(2, final.head_seq + 1))
    assert_each_child_attempt_ran_once(ledger)
    ran_on = {m[3]: m[5] for m in ledger_lines(ledger)}  # attempt -> the replica's marker
    assert set(ran_on) == {"1", "2"} and ran_on["1"] != ran_on["2"]
    assert "taken over" in b_proc.output
