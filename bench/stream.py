"""One job, one summarize step over 5,000 generated files.

Prints:
1. child transitions per second, persisted and streamed to one watcher (from
   the summarize step starting to the watcher receiving its COMPLETED event);
2. events per second through WatchJob (replaying the job's log), next to a bare
   grpc.aio server-stream of the very same bytes (serialized beforehand) in the same run,
   and the ratio: warm (the log's pages in the watch cache, as for any job replayed
   before) and cold (the cache dropped before each replay: every page read from the store).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from orchestrator_service.server import Orchestrator, Settings
from stepwatch.client import Client
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

from .bare import passthrough_server

JOB = """
name = "bench"
[steps.scan]
type = "scan_files"
include = ["files/*.txt"]
concurrency = 16
[steps.summarize]
type = "summarize"
depends = ["scan"]
concurrency = 16
"""


def make_files(root: Path, n: int) -> None:
    folder = root / "files"
    folder.mkdir()
    for i in range(n):
        (folder / f"f{i:05d}.txt").write_text(f"file {i}\n" + "lorem ipsum dolor sit amet\n" * (i % 7))


def bare_server(messages: list[pb.WatchJobResponse]) -> grpc.aio.Server:
    """Streams the same responses, serialized beforehand, through a pass-through serializer:
    the floor any WatchJob stream of these bytes is measured against."""
    encoded = [m.SerializeToString() for m in messages]

    async def watch(request: pb.WatchJobRequest, context: object):  # type: ignore[no-untyped-def]
        for data in encoded:
            yield data

    return passthrough_server(watch_job=watch)


PAIRS = 5


async def stream_rate(target: str, job_id: str, rounds: int,
                      before_each: Callable[[], None] = lambda: None) -> tuple[int, float]:
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.OrchestratorServiceStub(ch)
        count = 0
        took = 0.0
        for _ in range(rounds):
            before_each()
            start = time.perf_counter()
            async for _m in stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_seq=1)):
                count += 1
            took += time.perf_counter() - start
        return count, took


async def main(files: int, min_messages: int, log_steps: int = 2000) -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        make_files(ws, files)
        orch = Orchestrator(Settings(port=0, db_url=f"sqlite:///{ws / 'bench.db'}", jobs_dir=None,
                                     workspace=ws, heartbeat_s=5))
        port = await orch.start()
        target = f"127.0.0.1:{port}"
        try:
            async with Client(target) as client:
                job = await client.submit(definition_toml=JOB)
                summarize_id = next(s.step_id for s in job.steps if s.name == "summarize")
                started = finished = None
                live_events = 0
                async for msg in client.watch(job.job_id):
                    if msg.WhichOneof("kind") != "event":
                        continue
                    ev = msg.event
                    if ev.step_changed.step_id == summarize_id:
                        live_events += 1
                        if ev.step_changed.status == pb.STEP_STATUS_RUNNING and started is None:
                            started = time.perf_counter()
                        if ev.step_changed.status == pb.STEP_STATUS_COMPLETED:
                            finished = time.perf_counter()
                final = await client.get_job(job.job_id)
            step = next(s for s in final.steps if s.name == "summarize")
            assert step.status == pb.STEP_STATUS_COMPLETED, step
            transitions = 2 * step.children.total  # PENDING->RUNNING, RUNNING->COMPLETED
            took = finished - started

            # A long log to replay: one event per step transition of many small steps.
            async with Client(target) as client:
                long_job = await client.submit(definition_toml='name = "long"\n' + "".join(
                    f'[steps.s{i}]\ntype = "shell"\ncommands = ["true"]\n'
                    for i in range(log_steps)))
                async for _ in client.watch(long_job.job_id):
                    pass
                log = [m async for m in client.watch(long_job.job_id, after_seq=1)]
            rounds = max(1, -(-min_messages // len(log)))
            bare = bare_server(log)
            bare_port = bare.add_insecure_port("127.0.0.1:0")
            await bare.start()
            # Paired rounds, taking turns: a noisy neighbour (this machine's stolen CPU) hits
            # both sides of a pair alike; the median pair's ratio is the figure.
            # Warm: the log's pages are in the watch cache (eventcache.py), as for any replay
            # of a job read before; cold: dropped before each replay, so every page is read.
            assert orch.servicer is not None
            cache = orch.servicer.event_cache
            pairs: list[tuple[tuple[int, float], tuple[int, float]]] = []
            cold: list[tuple[tuple[int, float], tuple[int, float]]] = []
            for _ in range(PAIRS):
                pairs.append((await stream_rate(target, long_job.job_id, rounds),
                              await stream_rate(f"127.0.0.1:{bare_port}", "bare", rounds)))
                cold.append((await stream_rate(target, long_job.job_id, rounds,
                                               lambda: cache.forget([long_job.job_id])),
                             await stream_rate(f"127.0.0.1:{bare_port}", "bare", rounds)))
            await bare.stop(None)
        finally:
            await orch.stop()

    ratios = sorted((n_sw / t_sw) / (n_bare / t_bare) for (n_sw, t_sw), (n_bare, t_bare) in pairs)
    cold_ratios = sorted((n_sw / t_sw) / (n_bare / t_bare)
                         for (n_sw, t_sw), (n_bare, t_bare) in cold)
    n_cold, t_cold = sum(p[0][0] for p in cold), sum(p[0][1] for p in cold)
    n_sw, t_sw = sum(p[0][0] for p in pairs), sum(p[0][1] for p in pairs)
    n_bare, t_bare = sum(p[1][0] for p in pairs), sum(p[1][1] for p in pairs)
    sw_rate, bare_rate = n_sw / t_sw, n_bare / t_bare
    return [
        f"summarize step: {step.children.total} children, {transitions} child transitions "
          f"persisted in {took:.2f} s -> {transitions / took:,.0f} transitions/s "
          f"(streamed to 1 watcher as {live_events} step events)",
        f"job log: {len(log)} events; replayed {rounds}x through each server, {PAIRS} rounds each",
        f"WatchJob (stepwatch), warm:  {n_sw:>7} events in {t_sw:.2f} s -> {sw_rate:,.0f} events/s",
        f"bare grpc.aio server-stream: {n_bare:>7} events in {t_bare:.2f} s -> {bare_rate:,.0f} events/s",
        f"ratio stepwatch / bare, round by round: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {ratios[len(ratios) // 2]:.2f} (goal >= 0.95)",
        f"WatchJob (stepwatch), cold:  {n_cold:>7} events in {t_cold:.2f} s -> "
          f"{n_cold / t_cold:,.0f} events/s (every page read from the store)",
        f"ratio cold / bare, round by round: {', '.join(f'{r:.2f}' for r in cold_ratios)}; "
        f"median {cold_ratios[len(cold_ratios) // 2]:.2f}",
    ]
