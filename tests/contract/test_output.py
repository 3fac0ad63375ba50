"""Step output through the contract: children, logs and documents, black-box."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator

from .conftest import Server
from .test_grpcurl import grpcurl

DEADLINE = 120


def run_to_end(stub: pb_grpc.OrchestratorServiceStub, toml: str) -> pb.Job:
    job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=30).job
    for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE):
        pass
    return stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=30).job


def shell(name: str, commands: list[str], extra: str = "") -> str:
    quoted = ", ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in commands)
    return f'name = "{name}"\n[steps.s]\ntype = "shell"\ncommands = [{quoted}]\n{extra}'


def pages(stub: pb_grpc.OrchestratorServiceStub, **query: object) -> Iterator[pb.ListChildrenResponse]:
    token = ""
    while True:
        page = stub.ListChildren(pb.ListChildrenRequest(page_token=token, **query), timeout=30)
        yield page
        if not (token := page.next_page_token):
            return


def logs(stub: pb_grpc.OrchestratorServiceStub, job_id: str, after: int = 0,
         **query: object) -> list[pb.LogChunk]:
    return [r.chunk for r in stub.WatchLogs(pb.WatchLogsRequest(
        job_id=job_id, step="s", after_offset=after, **query), timeout=DEADLINE)
        if r.WhichOneof("kind") == "chunk"]


@pytest.fixture(scope="module")
def big_job(stub: pb_grpc.OrchestratorServiceStub) -> pb.Job:
    commands = ["true"] * 2000
    for i in (17, 900, 1999):
        commands[i] = f"echo boom-{i} >&2; exit 3"
    commands[5] = "echo computing; echo 42"
    return run_to_end(stub, shell("big", commands, "concurrency = 32\nmax_child_failures = 3\n"))


def test_list_children_pages_2000_children_failed_first(stub: pb_grpc.OrchestratorServiceStub,
                                                        big_job: pb.Job) -> None:
    step = big_job.steps[0]
    assert step.status == pb.STEP_STATUS_COMPLETED and step.children.failed == 3
    seen = [c for page in pages(stub, job_id=big_job.job_id, step="s", page_size=150,
                                order=pb.CHILD_ORDER_FAILED_FIRST) for c in page.children]
    assert [c.index for c in seen[:3]] == [17, 900, 1999]
    assert all(c.status == pb.CHILD_STATUS_FAILED and "boom" in c.error.message
               and c.error.reason == pb.FAILURE_REASON_EXECUTION_FAILED for c in seen[:3])
    assert [c.index for c in seen[3:]] == [i for i in range(2000) if i not in (17, 900, 1999)]
    assert all(c.status == pb.CHILD_STATUS_COMPLETED and c.attempt == 1 for c in seen[3:])
    assert all(c.finished_at.ToMicroseconds() >= c.started_at.ToMicroseconds() > 0 for c in seen)
    assert next(c for c in seen if c.index == 5).result == "42"
    # By name or by step id, by index, and filtered: the same children.
    by_id = [c.index for p in pages(stub, job_id=big_job.job_id[:10], step=step.step_id,
                                    page_size=1000) for c in p.children]
    assert by_id == list(range(2000))
    failed = [c.index for p in pages(stub, job_id=big_job.job_id, step="s",
                                     status=pb.CHILD_STATUS_FAILED) for c in p.children]
    assert failed == [17, 900, 1999]
    # A token from one query is refused by another.
    first = stub.ListChildren(pb.ListChildrenRequest(job_id=big_job.job_id, step="s", page_size=10))
    with pytest.raises(grpc.RpcError) as err:
        stub.ListChildren(pb.ListChildrenRequest(job_id=big_job.job_id, step="s",
                                                 status=pb.CHILD_STATUS_FAILED,
                                                 page_token=first.next_page_token))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_watch_logs_live_and_resumed_gives_every_line_once(stub: pb_grpc.OrchestratorServiceStub) -> None:
    toml = shell("printer", ["for i in $(seq 1 500); do echo line $i; sleep 0.01; done; "
                             "echo to-stderr >&2"])
    job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=30).job
    live: list[pb.LogChunk] = []
    midway: list[pb.LogChunk] = []
    half = threading.Event()

    def follow() -> None:
        for r in stub.WatchLogs(pb.WatchLogsRequest(job_id=job.job_id, step="s"), timeout=DEADLINE):
            if r.WhichOneof("kind") == "chunk":
                live.append(r.chunk)
                if "line 250\n" in r.chunk.text:
                    half.set()

    reader = threading.Thread(target=follow)
    reader.start()
    assert half.wait(DEADLINE)
    at = live[-1].offset
    midway = logs(stub, job.job_id, after=at)  # joins a running log, follows it to the end
    reader.join(DEADLINE)
    text = "".join(c.text for c in live if c.stream == pb.LOG_STREAM_STDOUT)
    assert text == "".join(f"line {i}\n" for i in range(1, 501))
    assert [c.offset for c in live] == list(range(1, len(live) + 1))
    assert any(c.stream == pb.LOG_STREAM_STDERR and c.text == "to-stderr\n" for c in live)
    assert midway == live[at:]
    for k in range(0, len(live), 50):  # a finished step: from every 50th offset, the rest, once
        assert logs(stub, job.job_id, after=k) == live[k:]
    assert logs(stub, job.job_id, child_index=0) == live
    with pytest.raises(grpc.RpcError) as err:
        logs(stub, job.job_id, after=len(live) + 1)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_a_log_over_the_cap_ends_with_the_dropped_note(stub: pb_grpc.OrchestratorServiceStub) -> None:
    job = run_to_end(stub, shell("loud", ["head -c 1500000 /dev/zero | tr '\\\\0' y | fold -w 99"]))
    chunks = logs(stub, job.job_id)
    kept = sum(len(c.text.encode()) for c in chunks if c.stream == pb.LOG_STREAM_STDOUT)
    assert 1_000_000 < kept <= 1 << 20
    assert chunks[-1].stream == pb.LOG_STREAM_SYSTEM and "bytes of output dropped" in chunks[-1].text
    child = stub.ListChildren(pb.ListChildrenRequest(job_id=job.job_id, step="s")).children[0]
    assert child.output_bytes == 1_500_000 + 1_500_000 // 99 + 1


def test_unknown_ids_are_not_found(stub: pb_grpc.OrchestratorServiceStub, big_job: pb.Job) -> None:
    calls = [
        lambda: stub.ListChildren(pb.ListChildrenRequest(job_id="0" * 32, step="s")),
        lambda: stub.ListChildren(pb.ListChildrenRequest(job_id=big_job.job_id, step="nope")),
        lambda: stub.ListChildren(pb.ListChildrenRequest(job_id=big_job.job_id, step="s", attempt=9)),
        lambda: list(stub.WatchLogs(pb.WatchLogsRequest(job_id="0" * 32, step="s"))),
        lambda: stub.ListDocuments(pb.ListDocumentsRequest(job_id="0" * 32)),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_documents_with_their_attributes(stub: pb_grpc.OrchestratorServiceStub, server: Server,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    # The job makes its own files in the server's workspace (whatever database it runs on).
    tag = uuid.uuid4().hex[:12]
    toml = (f'name = "docs"\n[steps.make]\ntype = "shell"\ncommands = ["printf abc > {tag}-1.txt; '
            f'printf defg > {tag}-2.txt"]\n[steps.scan]\ntype = "scan_files"\ninclude = ["{tag}-*"]\n'
            f'tags = ["t"]\ndepends = ["make"]\n[steps.sum]\ntype = "scan_files"\n'
            f'include = ["{tag}-2.txt"]\ndepends = ["make"]\n')
    job = run_to_end(stub, toml)
    docs = [d for d in stub.ListDocuments(pb.ListDocumentsRequest(job_id=job.job_id)).documents]
    assert docs and all(d.attrs.fields["size"].number_value > 0 for d in docs)
    tagged = stub.ListDocuments(pb.ListDocumentsRequest(job_id=job.job_id, tags=["t"])).documents
    assert [d.path for d in tagged] == [d.path for d in docs if "t" in d.tags]
    one = stub.ListDocuments(pb.ListDocumentsRequest(job_id=job.job_id, page_size=1))
    assert len(one.documents) == 1 and (one.next_page_token != "") == (len(docs) > 1)


def test_grpcurl_reads_a_log(server: Server, stub: pb_grpc.OrchestratorServiceStub) -> None:
    job = run_to_end(stub, shell("say", ["echo hello from grpcurl"]))
    out = grpcurl(server, "stepwatch.v1.OrchestratorService/WatchLogs",
                  data={"job_id": job.job_id, "step": "s"})
    assert "hello from grpcurl" in out and "LOG_STREAM_STDOUT" in out


def test_compacted_history_answers_out_of_range(tmp_path: Path) -> None:
    server = Orchestrator(f"sqlite:///{tmp_path / 'r.db'}", workspace=tmp_path,
                          extra=["--keep-logs-days", "0.00001", "--retention-interval", "0.2"])
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = run_to_end(stub, shell("old", ["echo soon gone"]))
            deadline_ok = False
            for _ in range(200):  # retention runs every 0.2 s; logs older than 0.864 s go
                try:
                    logs(stub, job.job_id)
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.OUT_OF_RANGE
                    assert "log compacted" in err.details()
                    deadline_ok = True
                    break
                time.sleep(0.05)  # polling the server's state, with a bound
            assert deadline_ok, "the log was never compacted"
    finally:
        server.stop()
