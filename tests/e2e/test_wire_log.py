"""The event log stores the contract's bytes: what a watcher receives is what the log holds,
byte for byte; a database written by the previous version (JSON payloads) is upgraded and
serves the same events; 200 watchers of one job each get every seq exactly once."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import grpc
from alembic.script import ScriptDirectory
from google.protobuf import json_format

from orchestrator_service.migrations import HERE as MIGRATIONS
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import REPO, Orchestrator

DEADLINE = 60
FIXTURES = REPO / "tests" / "fixtures"
WATCH = "/stepwatch.v1.OrchestratorService/WatchJob"


def raw_events(target: str, job_id: str) -> list[bytes]:
    """WatchJob from seq 1 on, each response as the bytes that came over the wire."""
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_stream(WATCH, request_serializer=pb.WatchJobRequest.SerializeToString,
                               response_deserializer=lambda b: b)
        return list(call(pb.WatchJobRequest(job_id=job_id, after_seq=1), timeout=DEADLINE))


def test_watchers_get_the_bytes_the_log_holds(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    orch = Orchestrator(f"sqlite:///{db}", workspace=tmp_path)
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                'name = "w"\n[policy]\non_step_failure = "continue"\n'
                '[steps.a]\ntype = "shell"\ncommands = ["true", "exit 2"]\nmax_child_failures = 1\n'
                '[steps.b]\ntype = "shell"\ndepends = ["a"]\ncommands = ["exit 3"]\n')),
                timeout=DEADLINE).job
            for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE):
                pass
        received = raw_events(orch.target, job.job_id)
    finally:
        orch.stop()
    with sqlite3.connect(db) as c:
        stored = dict(c.execute("select seq, body from events where job_id = ? and seq > 1",
                                (job.job_id,)).fetchall())
        assert c.execute("select count(*) from events where payload is not null").fetchone() == (0,)
    assert len(received) == len(stored) >= 8
    for response in received:
        message = pb.WatchJobResponse.FromString(response)
        assert message.WhichOneof("kind") == "event"
        body = stored[message.event.seq]
        assert response.endswith(body)  # the stored bytes, sent as they are
        assert pb.JobEvent.FromString(body) == message.event


def test_a_database_of_the_previous_version_serves_the_same_events(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(FIXTURES / "v0005_json_events.db", db)
    expected: dict[str, list[dict]] = json.loads((FIXTURES / "v0005_events.json").read_text())
    orch = Orchestrator(f"sqlite:///{db}", workspace=tmp_path)  # upgrades it at start
    try:
        for job_id, events in expected.items():
            got = [json_format.MessageToDict(pb.WatchJobResponse.FromString(r).event)
                   for r in raw_events(orch.target, job_id)]
            assert got == events
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            for job_id, events in expected.items():
                job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=DEADLINE).job
                assert str(job.head_seq) == str(events[-1]["seq"])  # JSON has uint64 as text
    finally:
        orch.stop()
    with sqlite3.connect(db) as c:
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        assert c.execute("select version_num from alembic_version").fetchone() == (head,)
        assert c.execute("select count(*) from events where body is null").fetchone() == (0,)


async def test_200_watchers_of_one_job_each_get_every_seq_once(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    orch = await asyncio.to_thread(Orchestrator, f"sqlite:///{tmp_path / 'f.db'}", 0, None,
                                   tmp_path)
    try:
        async with grpc.aio.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            wait_gate = f"while [ ! -f {gate} ]; do sleep 0.05; done"
            cmds = ", ".join(f'"{wait_gate}; sleep 0.0{i % 9}"' for i in range(40))
            job = (await stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                f'name = "fan"\n[steps.a]\ntype = "shell"\nconcurrency = 8\ncommands = [{cmds}]\n'
                f'[steps.b]\ntype = "shell"\ndepends = ["a"]\ncommands = [{cmds}]\n')),
                timeout=DEADLINE)).job
            opened = asyncio.Event()
            started = [0]

            async def watcher() -> list[int]:
                seqs: list[int] = []
                async for r in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id),
                                             timeout=DEADLINE * 2):
                    kind = r.WhichOneof("kind")
                    if kind == "snapshot":
                        seqs.append(r.snapshot.seq)
                        started[0] += 1
                        if started[0] == 200:
                            opened.set()
                    elif kind == "event":
                        seqs.append(r.event.seq)
                return seqs

            tasks = [asyncio.create_task(watcher()) for _ in range(200)]
            await asyncio.wait_for(opened.wait(), DEADLINE)
            gate.write_text("")  # the job moves only once all 200 are watching
            results = await asyncio.gather(*tasks)
            final = (await stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE)).job
    finally:
        await asyncio.to_thread(orch.stop)
    assert final.status == pb.JOB_STATUS_COMPLETED and final.head_seq > 15  # a real stream
    for seqs in results:
        snapshot, events = seqs[0], seqs[1:]
        assert events == list(range(snapshot + 1, final.head_seq + 1))  # each once, in order
