"""Faults between a replica and PostgreSQL, injected for real by a TCP proxy (tests/faultproxy).

- A COMMIT that reached PostgreSQL but whose reply was lost: the write is looked up by its
  receipt, not run again. SubmitJob (with and without request_id), a step transition, a
  children insert and a progress write each end with one job, COMPLETED at attempt 1, each
  event once, each log line once.
- A silent partition (blackhole) of 3 leases: the cut-off replica stops its command within
  0.6 lease on its own clock, the other takes the job over, and the two attempts never
  overlap; also when the partition falls inside a lease renewal, whose open transaction
  holds the job's row lock on the server (PostgreSQL ends that session, freeing the row).
  Replicas run in PID namespaces of their own, as on separate hosts: the one that takes
  over cannot see, let alone kill, the other's processes.
- A takeover whose first read fails still completes the job within 2 leases.
- PostgreSQL stopped for 3 leases: every replica, idle or busy, NOT_SERVING while it is down
  and SERVING within 1 s of its return; SubmitJob works and makes exactly one job.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.faultproxy import FaultProxy
from tests.postgres import PostgresCluster
from tests.procs import Orchestrator, kill_process_groups_matching
from tests.support import TERMINAL, finish, until

# Run alone (make test's second pass): takeovers and recoveries are timed against the wall clock.
pytestmark = pytest.mark.serial

DEADLINE = 60.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# As on separate hosts: a PID namespace (and /proc) of its own for each replica.
OWN_HOST = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM"]


@pytest.fixture
def proxy(postgres: PostgresCluster) -> Iterator[FaultProxy]:
    p = FaultProxy(postgres.port)
    yield p
    p.stop()


@pytest.fixture
def started() -> Iterator[list[Orchestrator]]:
    procs: list[Orchestrator] = []
    yield procs
    for r in procs:
        # unshare ignores SIGTERM while it waits for its child; killing it sends the
        # orchestrator inside SIGTERM (--kill-child): the same graceful stop, without
        # waiting out stop()'s 15 s.
        r.stop(signal.SIGKILL if r.args[0] == "unshare" else signal.SIGTERM)


def replica(url: str, workspace: Path, lease: float, own_host: bool = False) -> Orchestrator:
    return Orchestrator(url, workspace=workspace, heartbeat=0.5,
                        extra=["--lease-seconds", str(lease)], prefix=OWN_HOST if own_host else ())


def stub(r: Orchestrator) -> pb_grpc.OrchestratorServiceStub:
    return pb_grpc.OrchestratorServiceStub(grpc.insecure_channel(r.target))


def health(r: Orchestrator) -> int:
    with grpc.insecure_channel(r.target) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="stepwatch.v1.OrchestratorService"),
            timeout=5).status


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url.replace("+psycopg", "")) as c:
        return list(c.execute(sql).fetchall())


def two_steps(tag: str) -> str:
    lines = ", ".join(f'"echo {tag}-a{i}"' for i in range(3))
    return (f'name = "{tag}"\n[steps.a]\ntype = "shell"\ncommands = [{lines}]\n'
            f'[steps.b]\ntype = "shell"\ncommands = ["echo {tag}-b0"]\ndepends = ["a"]\n')


def assert_exactly_once(url: str, s: pb_grpc.OrchestratorServiceStub, job: pb.Job,
                        tag: str) -> None:
    """One job; COMPLETED as it would have been (every step at attempt 1); its log has each
    seq once, contiguous, the terminal event last; each output line stored once."""
    assert rows(url, "SELECT count(*) FROM jobs") == [(1,)]
    assert job.status == pb.JOB_STATUS_COMPLETED, job
    assert [(st.status, st.attempt) for st in job.steps] == [(pb.STEP_STATUS_COMPLETED, 1)] * 2
    assert rows(url, "SELECT seq FROM events ORDER BY seq") == [
        (n,) for n in range(1, job.head_seq + 1)]
    events = [m.event for m in s.WatchJob(pb.WatchJobRequest(job_id=job.job_id, after_seq=1),
                                          timeout=30) if m.WhichOneof("kind") == "event"]
    assert [e.seq for e in events] == list(range(2, job.head_seq + 1))
    ends = [e.seq for e in events if e.HasField("job_changed")
            and e.job_changed.status in TERMINAL]
    assert ends == [job.head_seq]
    texts = [t for (t,) in rows(url, "SELECT text FROM log_chunks")]
    wanted = [f"{tag}-a{i}\n" for i in range(3)] + [f"{tag}-b0\n"]
    assert sorted(t for t in texts if tag in t) == sorted(wanted), texts
    children = rows(url, "SELECT step_id, attempt, idx, status FROM children")
    assert len(children) == len({c[:3] for c in children}) == 4


@pytest.mark.parametrize("case, statement", [
    ("submit", "INSERT INTO jobs"),
    ("submit-with-request-id", "INSERT INTO jobs"),
    ("step-transition", "UPDATE steps SET status"),
    ("children-insert", "INSERT INTO children"),
    ("progress-write", "UPDATE children SET status"),
])
def test_a_commit_whose_reply_is_lost_is_not_run_again(
        case: str, statement: str, pg_url: str, proxy: FaultProxy, tmp_path: Path,
        started: list[Orchestrator]) -> None:
    started.append(replica(proxy.url(pg_url), tmp_path, lease=3.0))
    s = stub(started[0])
    tag = case.replace("-", "")
    fired = proxy.lose_commit_reply(statement)
    request_id = "rid-1" if case == "submit-with-request-id" else ""
    job = s.SubmitJob(pb.SubmitJobRequest(definition_toml=two_steps(tag),
                                          request_id=request_id), timeout=DEADLINE).job
    final = finish(s, job.job_id)
    assert fired.is_set(), f"the proxy never lost a reply for {statement!r}"
    assert_exactly_once(pg_url, s, final, tag)
    out = started[0].output
    assert "read back, not run again" in out, out[-3000:]
    if request_id:  # the same request again is the same job
        again = s.SubmitJob(pb.SubmitJobRequest(definition_toml=two_steps(tag),
                                                request_id=request_id), timeout=DEADLINE).job
        assert again.job_id == job.job_id


def ticks(path: Path) -> dict[int, list[int]]:
    """attempt -> the times (ns) its command said it was alive."""
    out: dict[int, list[int]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        m = re.fullmatch(r"(\d+) (\d+)", line)
        if m:
            out.setdefault(int(m[1]), []).append(int(m[2]))
    return out


# Statements that lock the job's row until their COMMIT: the lease renewal's
# (leases.renew), and the first of every write of the job, which extends its lease
# (leases.lock_extending).
LOCKED_BY = {"inside-a-lease-renewal": "RETURNING jobs.job_id, jobs.lease_epoch, jobs.cancel_requested",
             "inside-a-write-of-the-job": "SET lease_expires_at=CASE WHEN"}


@pytest.mark.parametrize("where", ["between-transactions", *LOCKED_BY])
def test_a_silently_partitioned_replica_stops_its_commands_before_another_takes_over(
        where: str, pg_url: str, proxy: FaultProxy, tmp_path: Path,
        started: list[Orchestrator]) -> None:
    """``inside-...``: the partition begins right after that statement reached PostgreSQL,
    so the cut-off replica's open transaction holds the job's row lock (its COMMIT never
    comes): its commands still stop in time, counted from the last extension it knows
    committed, and the other replica takes the job over once PostgreSQL ends that
    transaction."""
    lease = 2.0
    a = replica(proxy.url(pg_url), tmp_path, lease, own_host=True)
    started.append(a)
    b = replica(pg_url, tmp_path, lease, own_host=True)
    started.append(b)
    beat = tmp_path / "beats"
    # Attempt 1 beats until it is killed; attempt 2 beats a few times and succeeds.
    script = tmp_path / "beat.sh"
    # It prints too: its output is written (a write of the job) while it runs.
    script.write_text(f'n=0; while [ "$STEPWATCH_ATTEMPT" = 1 ] || [ $n -lt 5 ]; do '
                      f'echo "$STEPWATCH_ATTEMPT $(date +%s%N)" >> {beat}; n=$((n+1)); '
                      'echo beat; sleep 0.02; done\n')
    # A tree (sh under sh), as real commands are.
    toml = (f'name = "partition"\n[steps.s]\ntype = "shell"\nmax_attempts = 2\n'
            f'commands = ["sh {script} & wait"]\n')
    job = stub(a).SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=DEADLINE).job
    until(lambda: len(ticks(beat).get(1, [])) >= 3, "attempt 1 beating on A")
    if where == "between-transactions":
        cut_at = time.time_ns()
        proxy.blackhole()
    else:
        fired = proxy.blackhole_after(LOCKED_BY[where])
        assert fired.wait(3 * lease), f"no {where} within 3 leases"
        cut_at = time.time_ns()
    try:
        until(lambda: len(ticks(beat).get(2, [])) >= 5, "attempt 2 on B", timeout=3 * lease + 10)
        # Held for 3 leases in all, as the partition.
        time.sleep(max(0.0, 3 * lease - (time.time_ns() - cut_at) / 1e9))  # the partition's length
    finally:
        proxy.restore()
    final = finish(stub(b), job.job_id)
    assert final.status == pb.JOB_STATUS_COMPLETED, final
    assert final.steps[0].attempt == 2
    beats = ticks(beat)
    last_a = max(beats[1])
    first_b = min(beats[2])
    stopped_after = (last_a - cut_at) / 1e9
    print(f"\nA's command last beat {stopped_after:.2f} s after the cut; B's attempt began "
          f"{(first_b - last_a) / 1e9:.2f} s after that")
    # 0.6 lease after its last renewal (at most the cut), plus a beat's and a kill's time.
    assert stopped_after <= 0.6 * lease + 0.3, stopped_after
    assert first_b > last_a, "attempt 2 began while attempt 1 still ran"
    assert "abandoning 1 job(s)" in a.output, a.output[-3000:]
    until(lambda: health(a) == SERVING, "A SERVING again after the partition", timeout=10)


def test_a_takeover_whose_first_read_fails_completes_within_2_leases(
        pg_url: str, proxy: FaultProxy, tmp_path: Path, started: list[Orchestrator]) -> None:
    lease = 3.0
    a = replica(pg_url, tmp_path, lease)
    started.append(a)
    b = replica(proxy.url(pg_url), tmp_path, lease)
    started.append(b)
    marker = tmp_path / "attempts"
    toml = ('name = "adopt"\n[steps.s]\ntype = "shell"\nmax_attempts = 2\n'
            f'commands = ["echo $STEPWATCH_ATTEMPT >> {marker}; '
            '[ $STEPWATCH_ATTEMPT = 1 ] && sleep 30; true"]\n')
    job = stub(a).SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=DEADLINE).job
    until(lambda: marker.exists() and marker.read_text().strip() == "1", "attempt 1 on A")
    # B's first read of the job, as it takes it over, dies with its connection.
    fired = proxy.cut_on("WHERE jobs.job_id = ")
    a.stop(signal.SIGKILL)
    # Read from the database, not through B: B's first read must be its takeover's.
    took = until(lambda: rows(pg_url, f"SELECT status FROM jobs WHERE job_id = '{job.job_id}'")
                 == [(pb.JOB_STATUS_COMPLETED,)], "the job COMPLETED", timeout=4 * lease)
    final = finish(stub(b), job.job_id)
    kill_process_groups_matching(str(marker))
    assert fired.is_set(), "the takeover's read was never cut"
    assert final.status == pb.JOB_STATUS_COMPLETED, (final, b.output[-3000:])
    assert final.steps[0].attempt == 2
    assert took <= 2 * lease, f"completed {took:.1f} s after the kill (lease {lease} s)"


def test_postgres_down_for_3_leases_every_replica_serving_within_1_s_of_its_return(
        tmp_path: Path, started: list[Orchestrator]) -> None:
    lease = 2.0
    cluster = PostgresCluster()  # its own: this test stops it
    try:
        url = cluster.new_database()
        busy, idle = (replica(url, tmp_path, lease) for _ in range(2))
        started += [busy, idle]
        job = stub(busy).SubmitJob(pb.SubmitJobRequest(definition_toml=(
            'name = "busy"\n[steps.s]\ntype = "shell"\nmax_attempts = 3\n'
            'commands = ["sleep 1", "sleep 1", "sleep 1"]\nconcurrency = 1\n')),
            timeout=DEADLINE).job
        cluster.pause()
        until(lambda: health(busy) == NOT_SERVING and health(idle) == NOT_SERVING,
              "both NOT_SERVING while PostgreSQL is down", timeout=5)
        time.sleep(3 * lease)  # the outage's length, not a wait for an event
        cluster.resume()
        back = time.monotonic()
        until(lambda: health(busy) == SERVING and health(idle) == SERVING,
              "both SERVING again", timeout=10)
        took = time.monotonic() - back
        print(f"\nboth replicas SERVING {took:.2f} s after PostgreSQL was back")
        assert took <= 1.0, took
        new = stub(idle).SubmitJob(pb.SubmitJobRequest(definition_toml=two_steps("after")),
                                   timeout=DEADLINE).job
        assert finish(stub(idle), new.job_id).status == pb.JOB_STATUS_COMPLETED
        assert finish(stub(busy), job.job_id).status == pb.JOB_STATUS_COMPLETED
        assert rows(url, "SELECT count(*) FROM jobs") == [(2,)]
    finally:
        for r in started:
            r.stop()
        started.clear()
        cluster.stop()


def test_a_sigkilled_replica_leaves_no_command_alive_1_s_later(
        pg_url: str, tmp_path: Path, started: list[Orchestrator]) -> None:
    """Not restarted, on a host of its own (nobody there kills its leftovers for it)."""
    a = replica(pg_url, tmp_path, 3.0, own_host=True)
    started.append(a)
    marker = f"tree-{time.time_ns()}"
    trees = ", ".join([f'"sh -c \'sleep 30 & sleep 30\' {marker}"'] * 3)
    stub(a).SubmitJob(pb.SubmitJobRequest(definition_toml=(
        f'name = "tree"\n[steps.s]\ntype = "shell"\nconcurrency = 3\ncommands = [{trees}]\n')),
        timeout=DEADLINE)
    until(lambda: len(with_marker(marker)) >= 3, "the three command trees running")
    server = int(Path(f"/proc/{a.popen.pid}/task/{a.popen.pid}/children").read_text().split()[0])
    os.kill(server, signal.SIGKILL)  # the server itself, not `unshare` (which would SIGTERM it)
    took = until(lambda: not with_marker(marker), "no command alive", timeout=1.0)
    print(f"\nevery command gone {took:.2f} s after the replica was SIGKILLed")


def with_marker(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eww" not in line]
