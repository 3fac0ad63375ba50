"""Log lines per second: one step printing 100,000 lines, captured, stored and streamed to a
WatchLogs reader, next to the same command writing the same lines to a file."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator

LINES = 100_000
COMMAND = f"seq 1 {LINES} | sed 's/^/log line number /'"


async def main(lines: int = LINES) -> list[str]:
    command = COMMAND.replace(str(LINES), str(lines))
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        start = time.perf_counter()
        subprocess.run(["sh", "-c", f"{command} > {ws / 'out.txt'}"], check=True)
        to_file = time.perf_counter() - start
        # A cap above the output (the default keeps 1 MiB a child): every line is kept.
        server = await asyncio.to_thread(Orchestrator, f"sqlite:///{ws / 'l.db'}", 0, None, ws,
                                         0.5, ["--log-cap-bytes", str(64 << 20)])
        try:
            async with grpc.aio.insecure_channel(server.target) as ch:
                stub = pb_grpc.OrchestratorServiceStub(ch)
                toml = f'name = "printer"\n[steps.s]\ntype = "shell"\ncommands = ["{command}"]\n'
                start = time.perf_counter()
                job = (await stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml))).job
                got = chunks = 0
                async for r in stub.WatchLogs(pb.WatchLogsRequest(job_id=job.job_id, step="s"),
                                              timeout=600):
                    if r.WhichOneof("kind") == "chunk":
                        chunks += 1
                        got += r.chunk.text.count("\n")
                took = time.perf_counter() - start
        finally:
            server.stop()
    assert got == lines, f"{got} lines streamed of {lines}"
    return [f"log: {got:,} lines in {chunks:,} chunks captured, stored and streamed in {took:.2f} s "
            f"-> {got / took:,.0f} lines/s; the same lines to a file: {to_file:.3f} s -> "
            f"{lines / to_file:,.0f} lines/s; ratio {to_file / took:.3f}"]
