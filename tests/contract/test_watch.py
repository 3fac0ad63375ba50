"""WatchJob invariants, as any client sees them."""

from __future__ import annotations

import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orchestrator_service.watch import PAGE
from stepwatch.v1 import orchestrator_pb2 as pb

from .conftest import Server
from .helpers import (
    DEADLINE,
    TERMINAL_JOB,
    TERMINAL_STEP,
    apply,
    events,
    finish,
    shell,
    submit,
    toml,
    watch,
)

MIXED = ("continue", shell("a", "true", "true", "exit 1", extra="max_child_failures = 1"),
         shell("b", "exit 1"), shell("c", "true", extra='depends = ["b"]'),
         shell("d", "true", extra='depends = ["a"]'))


def test_snapshot_first_contiguous_seqs_ok_end_and_replay_equals_get_job(stub) -> None:
    # A step that lasts a second: the stream opens while the job runs, so it has events to
    # apply (a job that ended before its watch opened is all snapshot; checked as well).
    job = submit(stub, toml(*MIXED, shell("slow", "sleep 1")))
    stream = watch(stub, job.job_id)  # returns only if the stream ended with OK
    assert stream[0].WhichOneof("kind") == "snapshot"
    assert all(m.WhichOneof("kind") != "snapshot" for m in stream[1:])
    snap = stream[0].snapshot
    seqs = [e.seq for e in events(stream)]
    assert seqs == list(range(snap.seq + 1, snap.seq + 1 + len(seqs)))
    if seqs:
        last = events(stream)[-1]
        assert last.WhichOneof("change") == "job_changed" and last.job_changed.status in TERMINAL_JOB
    else:
        assert snap.job.status in TERMINAL_JOB
    state = snap.job
    for e in events(stream):
        state = apply(state, e)
    final = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job
    assert state == final and final.head_seq == (seqs[-1] if seqs else snap.seq)


def test_terminal_values_never_change(stub) -> None:
    job = submit(stub, toml(*MIXED))
    finish(stub, job.job_id)
    stream = watch(stub, job.job_id, after_seq=1)
    terminal: dict[str, int] = {}
    for e in events(stream):
        if e.WhichOneof("change") == "step_changed":
            s = e.step_changed
            if s.step_id in terminal:
                assert s.status == terminal[s.step_id], "a terminal step status changed"
            elif s.status in TERMINAL_STEP:
                terminal[s.step_id] = s.status
        else:
            assert "job" not in terminal, "nothing follows the job's terminal event"
            if e.job_changed.status in TERMINAL_JOB:
                terminal["job"] = e.job_changed.status
    assert "job" in terminal


def test_resume_from_every_seq_is_exact(stub) -> None:
    job = submit(stub, toml(*MIXED))
    final = finish(stub, job.job_id)
    full = events(watch(stub, job.job_id, after_seq=1))
    head = final.head_seq
    for k in range(1, head + 1):
        got = events(watch(stub, job.job_id, after_seq=k))
        assert [e.seq for e in got] == list(range(k + 1, head + 1))
        assert got == full[k - 1:]
    snap = watch(stub, job.job_id, after_seq=0)
    assert len(snap) == 1 and snap[0].snapshot.seq == head and snap[0].snapshot.job == final


def test_a_replay_of_several_pages_is_whole_from_anywhere(stub) -> None:
    """The log is read a page at a time (PAGE events): across page boundaries nothing is
    lost, repeated or reordered, and the stream ends after the job's terminal event."""
    job = submit(stub, toml("stop", *(shell(f"s{i}", "true") for i in range(PAGE // 2))))
    final = finish(stub, job.job_id)
    assert final.head_seq > 2 * PAGE + 1, "the log must span more than two pages"
    full = events(watch(stub, job.job_id, after_seq=1))
    assert [e.seq for e in full] == list(range(2, final.head_seq + 1))
    assert full[-1].job_changed.status in TERMINAL_JOB
    for k in (PAGE - 1, PAGE, PAGE + 1, 2 * PAGE + 3, final.head_seq - 1):
        assert events(watch(stub, job.job_id, after_seq=k)) == full[k - 1:]


def test_a_deleted_job_is_not_replayed_from_memory(stub) -> None:
    """Replays are served from the watch cache once read; a deleted job's log is gone for
    every new watcher all the same, from any place."""
    job = submit(stub, toml("stop", *(shell(f"s{i}", "true") for i in range(PAGE // 4))))
    final = finish(stub, job.job_id)
    full = events(watch(stub, job.job_id, after_seq=1))
    assert events(watch(stub, job.job_id, after_seq=1)) == full  # the second from memory
    stub.DeleteJob(pb.DeleteJobRequest(job_id=job.job_id), timeout=DEADLINE)
    for after in (0, 1, PAGE // 2, final.head_seq - 1):
        try:
            watch(stub, job.job_id, after_seq=after)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND, err
        else:
            raise AssertionError(f"a deleted job replayed from after_seq {after}")


def test_heartbeats_arrive_on_an_idle_stream(stub, server: Server) -> None:
    job = submit(stub, toml("stop", shell("idle", "sleep 30")))
    call = stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE)
    beats: list[pb.Heartbeat] = []
    last_seq = 0
    for msg in call:
        kind = msg.WhichOneof("kind")
        if kind == "snapshot":
            last_seq = msg.snapshot.seq
        elif kind == "event":
            last_seq = msg.event.seq
        else:
            beats.append(msg.heartbeat)
            assert msg.heartbeat.head_seq == last_seq
            if len(beats) == 2:
                break
    call.cancel()
    assert beats[1].at.ToMicroseconds() > beats[0].at.ToMicroseconds()
    stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id), timeout=DEADLINE)


def test_many_concurrent_watchers_receive_identical_sequences(stub) -> None:
    job = submit(stub, toml(*MIXED))
    results: list[list[pb.JobEvent]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = events(watch(stub, job.job_id, after_seq=1))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert not errors
    assert results[0] and all(r == results[0] for r in results)


def test_a_watcher_cancelled_mid_stream_leaves_the_server_healthy(stub, channel) -> None:
    job = submit(stub, toml("stop", shell("slow", "sleep 30")))
    call = stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE)
    first = next(call)
    assert first.WhichOneof("kind") == "snapshot"
    call.cancel()
    try:
        next(call)
        raise AssertionError("a cancelled call yields nothing more")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.CANCELLED
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                       timeout=DEADLINE)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    again = stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE)
    assert next(again).snapshot.job.job_id == job.job_id
    again.cancel()
    stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id), timeout=DEADLINE)


def test_watch_jobs_shows_a_new_job_and_its_terminal_status(stub) -> None:
    feed = stub.WatchJobs(pb.WatchJobsRequest(limit=10), timeout=DEADLINE)
    first = next(feed)
    assert first.WhichOneof("kind") == "snapshot"
    assert all(not j.steps for j in first.snapshot.jobs)
    job = submit(stub, toml("continue", shell("a", "true"), shell("b", "exit 1")))
    statuses = []
    for msg in feed:
        if msg.WhichOneof("kind") == "job_changed" and msg.job_changed.job_id == job.job_id:
            statuses.append(msg.job_changed.status)
            assert not msg.job_changed.steps
            if msg.job_changed.status in TERMINAL_JOB:
                counts = msg.job_changed.step_counts
                break
    feed.cancel()
    assert statuses[0] == pb.JOB_STATUS_PENDING
    assert statuses[-1] == pb.JOB_STATUS_COMPLETED_WITH_FAILURES
    assert (counts.total, counts.completed, counts.failed) == (2, 1, 1)
