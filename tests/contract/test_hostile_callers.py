"""Callers that hold a token and misuse it, from outside: a revoked token's open streams end,
one caller cannot hold unbounded streams, a token file anyone may write is refused, an
operator cannot rerun an admin's inline definition, and request ids are the caller's own and
bound to what was asked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from stepwatch.tokens import new_token
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import REPO, Orchestrator

DEADLINE = 30
INLINE = 'name = "inline"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'
SLOW = 'name = "slow"\n[steps.a]\ntype = "shell"\ncommands = ["sleep 30"]\n'


@dataclass
class Stack:
    orch: Orchestrator
    path: Path
    lines: dict[str, str]  # name -> token file line
    tokens: dict[str, str]  # name -> token

    def stub(self) -> tuple[grpc.Channel, pb_grpc.OrchestratorServiceStub]:
        ch = grpc.insecure_channel(self.orch.target)
        return ch, pb_grpc.OrchestratorServiceStub(ch)

    def auth(self, name: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.tokens[name]}")]

    def rewrite(self, names: list[str], mode: int = 0o600) -> None:
        self.path.write_text("".join(self.lines[n] + "\n" for n in names))
        self.path.chmod(mode)
        def reloads() -> int:
            return (self.orch.output.count(" tokens from ")
                    + self.orch.output.count("not reloaded"))

        before = reloads()
        self.orch.popen.send_signal(signal.SIGHUP)
        end = time.monotonic() + DEADLINE
        while reloads() <= before:  # the server's log says it read the file again
            assert time.monotonic() < end, "the token file was not read again"
            time.sleep(0.02)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    tokens, lines = {}, {}
    for name, role in (("ada", "admin"), ("otto", "operator"), ("olga", "operator"),
                       ("vic", "viewer"), ("val", "viewer")):
        tokens[name], lines[name] = new_token(role, name)
    path = tmp_path / "tokens"
    path.write_text("".join(line + "\n" for line in lines.values()))
    path.chmod(0o600)
    orch = Orchestrator(f"sqlite:///{tmp_path / 'h.db'}", workspace=tmp_path,
                        extra=["--auth-token-file", str(path), "--max-streams-per-caller", "3"])
    yield Stack(orch, path, lines, tokens)
    orch.stop()


def first(stream: grpc.Future) -> object:
    return next(iter(stream))  # type: ignore[call-overload]


def test_a_revoked_tokens_open_streams_end_with_unauthenticated(stack: Stack) -> None:
    ch, stub = stack.stub()
    with ch:
        job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=SLOW), timeout=DEADLINE,
                             metadata=stack.auth("ada")).job
        vic = stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE * 2,
                            metadata=stack.auth("vic"))
        val = stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE * 2,
                            metadata=stack.auth("val"))
        feed = stub.WatchJobs(pb.WatchJobsRequest(), timeout=DEADLINE * 2, metadata=stack.auth("vic"))
        assert first(vic) and first(val) and first(feed)
        stack.rewrite(["ada", "otto", "olga", "val"])  # vic's token is gone
        for stream in (vic, feed):
            with pytest.raises(grpc.RpcError) as err:
                for _ in stream:
                    pass
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value
            assert "revoked" in err.value.details()
        stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id), timeout=DEADLINE,
                       metadata=stack.auth("ada"))
        assert [m for m in val]  # val's stream went on to the job's end
        with pytest.raises(grpc.RpcError) as err:
            stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE,
                        metadata=stack.auth("vic"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_one_caller_cannot_hold_more_streams_than_the_cap(stack: Stack) -> None:
    ch, stub = stack.stub()
    with ch:
        held = [stub.WatchJobs(pb.WatchJobsRequest(), timeout=DEADLINE, metadata=stack.auth("vic"))
                for _ in range(3)]
        for s in held:
            first(s)
        extra = stub.WatchJobs(pb.WatchJobsRequest(), timeout=DEADLINE, metadata=stack.auth("vic"))
        with pytest.raises(grpc.RpcError) as err:
            first(extra)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-streams-per-caller" in err.value.details()
        other = stub.WatchJobs(pb.WatchJobsRequest(), timeout=DEADLINE, metadata=stack.auth("val"))
        assert first(other)  # another caller is not affected
        held[0].cancel()
        again = stub.WatchJobs(pb.WatchJobsRequest(), timeout=DEADLINE, metadata=stack.auth("vic"))
        for _ in range(100):  # the closed stream is released as soon as the server sees it end
            try:
                assert first(again)
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                again = stub.WatchJobs(pb.WatchJobsRequest(), timeout=DEADLINE,
                                       metadata=stack.auth("vic"))
        else:
            raise AssertionError("a closed stream was never released")
        for s in [*held, other, again]:
            s.cancel()


def test_a_token_file_others_may_write_is_refused_at_start_and_on_reload(
        stack: Stack, tmp_path: Path) -> None:
    stack.rewrite(["ada", "vic"], mode=0o666)
    assert "writable by others" in stack.orch.output
    ch, stub = stack.stub()
    with ch:  # the previous tokens stay: otto still works
        stub.ListJobs(pb.ListJobsRequest(), timeout=DEADLINE, metadata=stack.auth("otto"))
    path = tmp_path / "open-tokens"
    path.write_text(stack.lines["ada"] + "\n")
    path.chmod(0o620)
    done = subprocess.run([sys.executable, "-m", "orchestrator_service", "--port", "0",
                           "--db-url", f"sqlite:///{tmp_path / 'x.db'}",
                           "--auth-token-file", str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=DEADLINE, env=dict(os.environ))
    assert done.returncode == 2 and "writable by others" in done.stderr, done.stderr


def test_an_operator_cannot_rerun_an_admins_inline_job(stack: Stack) -> None:
    ch, stub = stack.stub()
    with ch:
        job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=INLINE), timeout=DEADLINE,
                             metadata=stack.auth("ada")).job
        for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE,
                               metadata=stack.auth("ada")):
            pass
        with pytest.raises(grpc.RpcError) as err:
            stub.RerunJob(pb.RerunJobRequest(job_id=job.job_id), timeout=DEADLINE,
                          metadata=stack.auth("otto"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "inline" in err.value.details() and "admin" in err.value.details()
        again = stub.RerunJob(pb.RerunJobRequest(job_id=job.job_id), timeout=DEADLINE,
                              metadata=stack.auth("ada")).job
        assert again.rerun_of == job.job_id
        # A catalog job is an operator's to rerun.
        cat = stub.SubmitJob(pb.SubmitJobRequest(definition_name="release_checks"),
                             timeout=DEADLINE, metadata=stack.auth("otto")).job
        stub.CancelJob(pb.CancelJobRequest(job_id=cat.job_id), timeout=DEADLINE,
                       metadata=stack.auth("otto"))
        rerun = stub.RerunJob(pb.RerunJobRequest(job_id=cat.job_id), timeout=DEADLINE,
                              metadata=stack.auth("otto")).job
        assert rerun.rerun_of == cat.job_id
        stub.CancelJob(pb.CancelJobRequest(job_id=rerun.job_id), timeout=DEADLINE,
                       metadata=stack.auth("otto"))


def test_request_ids_are_the_callers_own_and_bound_to_the_request(stack: Stack) -> None:
    ch, stub = stack.stub()
    with ch:
        def submit(who: str, **kw: str) -> pb.Job:
            return stub.SubmitJob(pb.SubmitJobRequest(**kw), timeout=DEADLINE,
                                  metadata=stack.auth(who)).job

        mine = submit("otto", definition_name="release_checks", request_id="deploy-1")
        assert submit("otto", definition_name="release_checks",
                      request_id="deploy-1").job_id == mine.job_id  # a retry: the same job
        # Another caller's id of the same spelling is another request: a job of its own.
        theirs = submit("olga", definition_name="release_checks", request_id="deploy-1")
        assert theirs.job_id != mine.job_id
        admins = submit("ada", definition_toml=INLINE, request_id="deploy-1")
        assert admins.job_id not in (mine.job_id, theirs.job_id)
        assert admins.definition_name == "inline"  # the admin's definition is what runs
        # The same id with something else asked: ALREADY_EXISTS naming the job.
        with pytest.raises(grpc.RpcError) as err:
            submit("otto", definition_name="docs_inventory", request_id="deploy-1")
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert mine.job_id in err.value.details()
        for j in (mine, theirs, admins):
            try:
                stub.CancelJob(pb.CancelJobRequest(job_id=j.job_id), timeout=DEADLINE,
                               metadata=stack.auth("ada"))
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
