"""OpenTelemetry: a server in this process, traced into an in-memory exporter — the spans
of the RPCs, the job, its step attempts and their child batches, with ids as attributes."""

from __future__ import annotations

from pathlib import Path

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator_service.server import Orchestrator, Settings
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

DEADLINE = 60


def provider_with(exporter: InMemorySpanExporter) -> None:
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):  # the first test to need one sets it
        current = TracerProvider()
        trace.set_tracer_provider(current)
    current.add_span_processor(SimpleSpanProcessor(exporter))


async def test_spans_of_a_job_its_attempts_batches_and_rpcs(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider_with(exporter)
    orch = Orchestrator(Settings(port=0, db_url=f"sqlite:///{tmp_path / 't.db'}", jobs_dir=None,
                                 workspace=tmp_path, heartbeat_s=1))
    port = await orch.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = (await stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                'name = "traced"\n[steps.a]\ntype = "shell"\ncommands = ["true", "true"]\n'
                '[steps.b]\ntype = "shell"\ndepends = ["a"]\ncommands = ["true"]\n')),
                timeout=DEADLINE)).job
            async for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE):
                pass
    finally:
        await orch.stop()
    spans = exporter.get_finished_spans()
    by_name: dict[str, list] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    [job_span] = [s for s in by_name["stepwatch.job"] if s.attributes["stepwatch.job_id"] == job.job_id]
    attempts = [s for s in by_name["stepwatch.step_attempt"]
                if s.attributes["stepwatch.job_id"] == job.job_id]
    assert sorted(s.attributes["stepwatch.step"] for s in attempts) == ["a", "b"]
    assert all(s.attributes["stepwatch.status"] == "COMPLETED" for s in attempts)
    assert all(s.parent is not None and s.parent.span_id == job_span.context.span_id
               for s in attempts)  # nested under the job
    batches = [s for s in by_name["stepwatch.child_batch"]
               if s.attributes["stepwatch.job_id"] == job.job_id]
    assert sorted((s.attributes["stepwatch.step"], s.attributes["stepwatch.children"])
                  for s in batches) == [("a", 2), ("b", 1)]
    attempt_ids = {s.context.span_id for s in attempts}
    assert all(s.parent is not None and s.parent.span_id in attempt_ids for s in batches)
    rpc_names = {s.name for s in spans if s.name.startswith("/stepwatch.v1.")}
    assert {"/stepwatch.v1.OrchestratorService/SubmitJob",
            "/stepwatch.v1.OrchestratorService/WatchJob"} <= rpc_names
