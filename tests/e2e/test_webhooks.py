"""Webhooks delivered to a real HTTP receiver by real orchestrator processes: signed, retried
with backoff, given up on visibly, sent again after a SIGKILL mid-send, and never one
attempt twice across PostgreSQL replicas (one SIGKILLed mid-way)."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator, run_job
from tests.support.receiver import Receiver, receiver

DEADLINE = 60
SECRET = "correct horse battery staple"
FAILING = '''name = "half_broken"
[policy]
on_step_failure = "continue"
[steps.ok]
type = "shell"
commands = ["echo fine"]
[steps.broken]
type = "shell"
commands = ["echo no >&2; exit 3"]
'''
QUICK = 'name = "quick"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def server(db: str, tmp: Path, *flags: str) -> Orchestrator:
    return Orchestrator(db, workspace=tmp, extra=["--webhook-allow-host", "127.0.0.1",
                                                  "--webhook-backoff", "0.2", *flags])


def subscribe(target: str, url: str, *events: int, **kw: object) -> pb.Subscription:
    with grpc.insecure_channel(target) as ch:
        return pb_grpc.OrchestratorServiceStub(ch).CreateSubscription(
            pb.CreateSubscriptionRequest(url=url, events=list(events) or [  # type: ignore[arg-type]
                pb.NOTIFY_EVENT_JOB_FINISHED], secret=SECRET, **kw), timeout=DEADLINE).subscription


def deliveries(target: str, **kw: str) -> list[pb.Delivery]:
    with grpc.insecure_channel(target) as ch:
        return list(pb_grpc.OrchestratorServiceStub(ch).ListDeliveries(
            pb.ListDeliveriesRequest(limit=1000, **kw), timeout=DEADLINE).deliveries)


def until_delivery(target: str, ok: object, **kw: str) -> list[pb.Delivery]:
    deadline = time.monotonic() + DEADLINE
    while True:
        got = deliveries(target, **kw)
        if ok(got):  # type: ignore[operator]
            return got
        assert time.monotonic() < deadline, got
        time.sleep(0.1)  # polling the delivery log: the recorded outcome is the event


def test_each_delivery_is_signed_and_carries_the_job_and_event(tmp_path: Path,
                                                               hooks: Receiver) -> None:
    orch = server(f"sqlite:///{tmp_path / 'w.db'}", tmp_path)
    try:
        sub = subscribe(orch.target, hooks.url("/all"), pb.NOTIFY_EVENT_JOB_FINISHED,
                        pb.NOTIFY_EVENT_STEP_FAILED)
        only_failed = subscribe(orch.target, hooks.url("/failed"), pb.NOTIFY_EVENT_JOB_FINISHED,
                                job_statuses=[pb.JOB_STATUS_FAILED])
        job = run_job(orch.target, definition_toml=FAILING)
        assert job.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES
        got = hooks.wait_for(lambda rs: len(rs) >= 2)
        by_event = {r.headers["x-stepwatch-event"]: r for r in got}
        assert set(by_event) == {"step.failed", "job.finished"}
        for r in got:
            assert r.path == "/all" and r.signed_by(SECRET)
            assert r.headers["content-type"] == "application/json"
            p = r.payload
            assert p.delivery_id == r.headers["x-stepwatch-delivery"] and len(p.delivery_id) == 32
            assert p.subscription_id == sub.subscription_id and p.attempt == 1
            assert p.job.job_id == job.job_id and len(p.job.steps) == 2
            assert abs(p.sent_at.ToSeconds() - int(r.headers["x-stepwatch-timestamp"])) <= 1
            assert not r.signed_by(SECRET + "x")
        finished = by_event["job.finished"].payload
        assert finished.event == pb.NOTIFY_EVENT_JOB_FINISHED
        assert finished.job.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES
        step = by_event["step.failed"].payload
        assert step.event == pb.NOTIFY_EVENT_STEP_FAILED
        assert (step.step.name, step.step.status) == ("broken", pb.STEP_STATUS_FAILED)
        log = until_delivery(orch.target, lambda ds: all(
            d.state == pb.DELIVERY_STATE_DELIVERED for d in ds) and len(ds) == 2,
                             subscription_id=sub.subscription_id)
        assert {(d.attempts, d.last_status_code, d.job_id) for d in log} == {(1, 200, job.job_id)}
        assert {d.step for d in log} == {"broken", ""}
        # The job COMPLETED_WITH_FAILURES: the FAILED-only subscription was told nothing.
        assert hooks.on("/failed") == []
        assert deliveries(orch.target, subscription_id=only_failed.subscription_id) == []
    finally:
        orch.stop()


def test_a_receiver_that_fails_twice_gets_the_third_try(tmp_path: Path, hooks: Receiver) -> None:
    orch = server(f"sqlite:///{tmp_path / 'w.db'}", tmp_path, "--metrics-port", "0")
    metrics_url = orch.wait_for(re.compile(r"metrics on (http://\S+)")).group(1)
    hooks.script["/flaky"] = [500, 503]
    try:
        subscribe(orch.target, hooks.url("/flaky"))
        job = run_job(orch.target, definition_toml=QUICK)
        got = hooks.wait_for(lambda rs: len(rs) >= 3)
        assert len({r.payload.delivery_id for r in got}) == 1
        assert [r.payload.attempt for r in got] == [1, 2, 3]
        assert all(r.signed_by(SECRET) for r in got)
        assert got[2].at - got[1].at >= 0.35  # backoff 0.2 s, doubled
        [d] = until_delivery(orch.target, lambda ds: ds and ds[0].state
                             == pb.DELIVERY_STATE_DELIVERED, job_id=job.job_id)
        assert (d.attempts, d.last_status_code) == (3, 200)
        text = urllib.request.urlopen(metrics_url, timeout=DEADLINE).read().decode()
        assert 'stepwatch_webhook_attempts_total{outcome="retry"} 2.0' in text
        assert 'stepwatch_webhook_attempts_total{outcome="delivered"} 1.0' in text
    finally:
        orch.stop()


def test_a_receiver_down_past_the_retry_limit_leaves_a_failed_delivery(
        tmp_path: Path, hooks: Receiver) -> None:
    orch = server(f"sqlite:///{tmp_path / 'w.db'}", tmp_path, "--webhook-max-attempts", "3")
    hooks.script["/down"] = [500] * 10
    try:
        subscribe(orch.target, hooks.url("/down"))
        subscribe(orch.target, "http://127.0.0.1:9/nobody-listens")
        job = run_job(orch.target, definition_toml=QUICK)
        log = until_delivery(orch.target, lambda ds: len(ds) == 2 and all(
            d.state == pb.DELIVERY_STATE_FAILED for d in ds), job_id=job.job_id)
        by_code = {d.last_status_code: d for d in log}
        assert by_code[500].attempts == 3 and "HTTP 500" in by_code[500].last_error
        assert by_code[0].attempts == 3 and "Connect" in by_code[0].last_error
        assert len(hooks.on("/down")) == 3
    finally:
        orch.stop()


def test_sigkilled_mid_send_delivers_after_restart(tmp_path: Path, hooks: Receiver) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    orch = server(db, tmp_path)
    hooks.hold.add("/slow")
    try:
        subscribe(orch.target, hooks.url("/slow"))
        job = run_job(orch.target, definition_toml=QUICK)
        first = hooks.wait_for(lambda rs: len(rs) == 1)[0]
        # The status and its delivery are committed; the send has not been answered.
        orch.stop(signal.SIGKILL)
        hooks.hold.discard("/slow")
        hooks.release()
        orch = server(db, tmp_path)
        got = hooks.wait_for(lambda rs: len(rs) == 2)
        assert got[1].payload.delivery_id == first.payload.delivery_id
        assert got[1].payload.attempt == 2 and got[1].signed_by(SECRET)
        [d] = until_delivery(orch.target, lambda ds: ds and ds[0].state
                             == pb.DELIVERY_STATE_DELIVERED, job_id=job.job_id)
        assert d.attempts == 2
    finally:
        orch.stop()


def test_two_replicas_never_send_one_attempt_twice(postgres: object, tmp_path: Path,
                                                  hooks: Receiver) -> None:
    url = postgres.new_database()  # type: ignore[attr-defined]
    # A 2 s send timeout: a claim the SIGKILLed replica held expires 5 s later (2 x 2 + 1).
    a, b = (server(url, tmp_path, "--webhook-timeout", "2"),
            server(url, tmp_path, "--webhook-timeout", "2"))
    try:
        subscribe(a.target, hooks.url("/jobs"))
        ids: list[str] = []
        with grpc.insecure_channel(a.target) as ca, grpc.insecure_channel(b.target) as cb:
            stubs = [pb_grpc.OrchestratorServiceStub(ca), pb_grpc.OrchestratorServiceStub(cb)]
            for i in range(50):
                if i == 25:
                    a.stop(signal.SIGKILL)  # mid-way: its jobs and claims go to b
                    stubs[0] = stubs[1]
                job = stubs[i % 2].SubmitJob(pb.SubmitJobRequest(definition_toml=QUICK),
                                             timeout=DEADLINE).job
                ids.append(job.job_id)
        got = hooks.wait_for(lambda rs: {r.payload.job.job_id for r in rs} >= set(ids), 120)
        sent = Counter((r.payload.delivery_id, r.payload.attempt) for r in got)
        assert max(sent.values()) == 1, sent.most_common(3)  # no attempt sent twice
        per_id = Counter(r.payload.delivery_id for r in got)
        assert len(per_id) == 50
        # A delivery id comes again only as a new attempt, after the SIGKILL cut one off.
        assert sum(n - 1 for n in per_id.values()) <= 1, per_id.most_common(3)
        assert all(r.signed_by(SECRET) for r in got)
    finally:
        a.stop()
        b.stop()


def test_the_readme_signature_check_accepts_a_real_delivery_and_refuses_a_forged_one(
        tmp_path: Path, hooks: Receiver) -> None:
    from tests.procs import REPO

    text = (REPO / "README.md").read_text()
    start = text.index("```python\nimport hashlib, hmac")
    snippet = text[start + len("```python\n"):text.index("```", start + 10)]
    scope: dict[str, object] = {}
    exec(snippet, scope)  # noqa: S102 - the README's own example, run as a reader would
    verify = scope["verify"]
    orch = server(f"sqlite:///{tmp_path / 'w.db'}", tmp_path)
    try:
        subscribe(orch.target, hooks.url("/readme"))
        job = run_job(orch.target, definition_toml=QUICK)
        r = hooks.wait_for(lambda rs: len(rs) >= 1)[0]
    finally:
        orch.stop()
    headers = {"X-Stepwatch-Signature": r.headers["x-stepwatch-signature"],
               "X-Stepwatch-Timestamp": r.headers["x-stepwatch-timestamp"]}
    payload = verify(SECRET, r.body, headers)  # type: ignore[operator]
    assert payload["job"]["jobId"] == job.job_id and payload["deliveryId"]
    with pytest.raises(PermissionError):
        verify(SECRET, r.body.replace(b"COMPLETED", b"FAILED"), headers)  # type: ignore[operator]
    with pytest.raises(PermissionError):
        verify("another secret", r.body, headers)  # type: ignore[operator]
