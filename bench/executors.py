"""Children per second in-process and on a real two-worker Dask cluster, in the same run:
a 5,000-child `summarize` step and a 2,000-child `shell` step running `true`; and, as the
Dask executor's reference, Dask's own ``client.map`` of the same child function
(summarize_beneath over the same files) on the same cluster.

Each figure is from the step's first RUNNING event to its COMPLETED event on a WatchJob
stream (children persisted and streamed, as a user sees them)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.dask_cluster import DaskCluster
from tests.procs import Orchestrator

from .stream import make_files


def summarize_job(n: int) -> str:
    return ('name = "sum"\n[steps.scan]\ntype = "scan_files"\ninclude = ["files/*.txt"]\n'
            '[steps.s]\ntype = "summarize"\ndepends = ["scan"]\nconcurrency = 32\n')


def shell_job(n: int) -> str:
    cmds = ", ".join(['"true"'] * n)
    return f'name = "sh"\n[steps.s]\ntype = "shell"\nconcurrency = 32\ncommands = [{cmds}]\n'


async def children_per_s(target: str, toml: str) -> tuple[int, float]:
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.OrchestratorServiceStub(ch)
        job = (await stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml))).job
        started = ended = None
        total = 0
        async for r in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=900):
            if r.WhichOneof("kind") != "event" or r.event.WhichOneof("change") != "step_changed":
                continue
            s = r.event.step_changed
            if s.name != "s":
                continue
            if s.status == pb.STEP_STATUS_RUNNING and started is None:
                started = time.perf_counter()
            if s.status == pb.STEP_STATUS_COMPLETED:
                ended, total = time.perf_counter(), s.children.completed
        assert started is not None and ended is not None, "the step did not complete"
        return total, total / (ended - started)


def client_map_rate(address: str, ws: Path) -> float:
    """Dask alone: summarize_beneath over every file with client.map, gathered; files/s."""
    from distributed import Client

    from orchestrator_service.step_types.summarize import summarize_beneath

    rels = sorted(f"files/{p.name}" for p in (ws / "files").iterdir())
    with Client(address) as client:
        client.gather(client.map(summarize_beneath, [ws] * 10, rels[:10], pure=False))  # warm
        start = time.perf_counter()
        client.gather(client.map(summarize_beneath, [ws] * len(rels), rels, pure=False))
        return len(rels) / (time.perf_counter() - start)


async def main(summarize: int = 5000, shell: int = 2000) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        make_files(ws, summarize)
        cluster = await asyncio.to_thread(DaskCluster)
        try:
            rates: dict[str, dict[str, float]] = {}
            for kind, extra in (("in-process", []),
                                ("dask, 2 workers", ["--executor", "dask", "--dask-scheduler",
                                                     cluster.address])):
                orch = await asyncio.to_thread(Orchestrator, f"sqlite:///{ws / (kind[:4] + '.db')}",
                                               0, None, ws, 0.5, extra)
                try:
                    rates[kind] = {}
                    for label, toml in ((f"{summarize:,} summarize children", summarize_job(summarize)),
                                        (f"{shell:,} shell `true` children", shell_job(shell))):
                        n, rate = await children_per_s(orch.target, toml)
                        rates[kind][label] = rate
                finally:
                    await asyncio.to_thread(orch.stop)
            for label in rates["in-process"]:
                a, b = rates["in-process"][label], rates["dask, 2 workers"][label]
                lines.append(f"{label}: in-process {a:,.0f}/s, on the Dask cluster {b:,.0f}/s "
                             f"(ratio {b / a:.2f})")
            bare = await asyncio.to_thread(client_map_rate, cluster.address, ws)
            mine = rates["dask, 2 workers"][f"{summarize:,} summarize children"]
            lines.append(f"Dask's own client.map of summarize_beneath over the same files: "
                         f"{bare:,.0f}/s; the Dask executor {mine:,.0f}/s: ratio {mine / bare:.2f} "
                         "(goal >= 0.8)")
        finally:
            await asyncio.to_thread(cluster.stop)
    return lines


if __name__ == "__main__":
    print("\n".join(asyncio.run(main())))
