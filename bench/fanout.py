"""Fan-out: N watchers of one job at ~100 events/s, in separate client processes, for N = 1,
100 and 1,000; per event and watcher, the delay from emitted_at to receipt (p50/p99/max) and
the share of events delivered; next to a bare grpc.aio server (its own process) pushing the
same event bytes at the same rate to the same number of streams. Also the RSS an idle
watcher costs the orchestrator."""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import statistics
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import REPO, Orchestrator

from .bare import announced
from .cpu import cpu_s
from .ui import busy

PROCS = 4  # client processes (the machine has 2 cores)


def clients(target: str, job_id: str, n: int, out: Path) -> list[subprocess.Popen[str]]:
    per = [n // PROCS + (1 if i < n % PROCS else 0) for i in range(min(PROCS, n))]
    return [subprocess.Popen([sys.executable, "-m", "bench.fanout_client", target, job_id,
                              str(k), str(out / f"c{i}")], cwd=REPO, stdout=subprocess.PIPE,
                             text=True) for i, k in enumerate(per) if k]


def wait_ready(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", "client failed"


def collect(procs: list[subprocess.Popen[str]], out: Path) -> tuple[list[float], list[dict]]:
    for p in procs:
        assert p.wait(600) == 0, "a client process failed"
    delays: list[float] = []
    counts: list[dict] = []
    for i in range(len(procs)):
        a = array.array("f")
        data = (out / f"c{i}.bin").read_bytes()
        a.frombytes(data)
        delays += a.tolist()
        counts += json.loads((out / f"c{i}.json").read_text())
    return delays, counts


def summary(delays: list[float], counts: list[dict], head: int) -> tuple[str, float]:
    """``head``: the last seq; each stream should have every event after its snapshot."""
    delays.sort()
    got = sum(c["events"] for c in counts)
    expected = sum(head - c["snapshot"] for c in counts)
    share = got / expected if expected else 0.0
    if not delays:
        return "no events", float("inf")
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    return (f"p50 {statistics.median(delays):.0f} ms, p99 {p99:.0f} ms, max {delays[-1]:.0f} ms, "
            f"delivered {100 * share:.1f} %"), p99


def throughput(counts: list[dict]) -> tuple[float, float]:
    """Events delivered per second over all streams, from the first receipt to the last; and
    the seconds until every stream had its snapshot (from when its process opened them)."""
    got = sum(c["events"] for c in counts)
    rx = [c for c in counts if c["events"]]
    span_ms = (max(c["last_rx"] for c in rx) - min(c["first_rx"] for c in rx)) if rx else 0.0
    return got / max(span_ms / 1000, 0.001), max(c["snap_ms"] for c in counts) / 1000


def per_message_us(cpu: float, counts: list[dict]) -> float:
    """Server CPU per event delivered to one stream, in microseconds."""
    return 1e6 * cpu / max(1, sum(c["events"] for c in counts))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def gated_job(gate: Path, seconds: float) -> str:
    """The job the watchers follow: its commands wait for ``gate`` to exist, then make ~100
    events a second for ``seconds``. Polled once a second: the 72 waiting commands must not
    load the machine (at 0.05 s they forked ~1,400 processes a second while the streams were
    being opened)."""
    wait_gate = f"while [ ! -f {gate} ]; do sleep 1; done"
    return busy(12, seconds).replace('"sleep 0.', f'"{wait_gate}; sleep 0.')  # all wait


def stepwatch_run(ws: Path, n: int, seconds: float,
                  ) -> tuple[str, float, list[bytes], float, tuple[float, float], float]:
    gate = ws / f"gate{n}"
    orch = Orchestrator(f"sqlite:///{ws / f'f{n}.db'}", 0, None, ws)
    try:
        toml = gated_job(gate, seconds)
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=60).job
            before = rss_kib(orch.popen.pid)
            out = ws / f"sw{n}"
            out.mkdir()
            procs = clients(orch.target, job.job_id, n, out)
            wait_ready(procs)
            per_watcher = (rss_kib(orch.popen.pid) - before) / n
            head0 = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=60).job.head_seq
            cpu0 = cpu_s(orch.popen.pid)
            gate.write_text("")
            delays, counts = collect(procs, out)
            cpu = cpu_s(orch.popen.pid) - cpu0
            final = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=60).job
            log = [r.event.SerializeToString() for r in stub.WatchJob(
                pb.WatchJobRequest(job_id=job.job_id, after_seq=head0), timeout=60)
                if r.WhichOneof("kind") == "event"]
    finally:
        orch.stop()
    text, p99 = summary(delays, counts, final.head_seq)
    return text, p99, log, per_watcher, throughput(counts), per_message_us(cpu, counts)


def bare_run(ws: Path, n: int, log: list[bytes], rate: float, load: float = 0.0,
             ) -> tuple[str, float, tuple[float, float], float]:
    """``load``: if not 0, the same job runs meanwhile (for that many seconds) on an
    orchestrator nobody watches, so the bare server sends on a machine as loaded as
    Stepwatch's."""
    path = ws / f"events{n}{'-loaded' if load else ''}.bin"
    path.write_bytes(b"".join(struct.pack(">I", len(e)) + e for e in log))
    bare = subprocess.Popen([sys.executable, "-m", "bench.fanout_bare", str(path), str(rate),
                             str(n)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert bare.stdout is not None and bare.stdin is not None
        target = announced(bare.stdout.readline())
        out = ws / f"bare{n}{'-loaded' if load else ''}"
        out.mkdir()
        procs = clients(target, "bare", n, out)
        wait_ready(procs)
        with contextlib.ExitStack() as stack:
            if load:
                stack.enter_context(loaded(ws / f"load{n}", load))
            cpu0 = cpu_s(bare.pid)
            bare.stdin.write("go\n")
            bare.stdin.flush()
            delays, counts = collect(procs, out)
            cpu = cpu_s(bare.pid) - cpu0
    finally:
        bare.wait(60)
    text, p99 = summary(delays, counts, len(log))  # the bare snapshot is seq 0
    return text, p99, throughput(counts), per_message_us(cpu, counts)


@contextlib.contextmanager
def loaded(ws: Path, seconds: float) -> Iterator[None]:
    """The watched job, running on an orchestrator of its own with no watcher: the load
    Stepwatch's own run puts on the machine, without the sending."""
    ws.mkdir()
    orch = Orchestrator(f"sqlite:///{ws / 'load.db'}", 0, None, ws)
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            stub.SubmitJob(pb.SubmitJobRequest(definition_toml=gated_job(ws / "gate", seconds)),
                           timeout=60)
            (ws / "gate").write_text("")
            yield
    finally:
        orch.stop()


async def main(sizes: tuple[int, ...] = (1, 100, 1000), seconds: float = 10) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        for n in sizes:
            text, p99, log, per_watcher, (rate_sw, snaps_sw), cpu_sw = await asyncio.to_thread(
                stepwatch_run, ws, n, seconds)
            stamps = [pb.JobEvent.FromString(e).emitted_at.ToMilliseconds() for e in log]
            rate = len(log) / max(0.001, (max(stamps) - min(stamps)) / 1000)
            bare_text, bare_p99, (rate_bare, snaps_bare), cpu_bare = await asyncio.to_thread(
                bare_run, ws, n, log, min(rate, 100.0))
            lines.append(f"{n:>5} watchers, {len(log)} events at {rate:.0f}/s: stepwatch {text}")
            lines.append(f"{'':>5}           bare grpc.aio: {bare_text}; "
                         f"p99 ratio {p99 / max(bare_p99, 0.001):.1f}x"
                         + (" (goal: <= 2 x, delivered >= 99 % of bare's)" if n == 100 else ""))
            if n >= 100:
                load_text, load_p99, (rate_load, _), _ = await asyncio.to_thread(
                    bare_run, ws, n, log, min(rate, 100.0), seconds)
                lines.append(f"{'':>5}           bare grpc.aio while the same job runs on an "
                             f"unwatched orchestrator: {load_text}; p99 ratio "
                             f"{p99 / max(load_p99, 0.001):.1f}x, events delivered/s "
                             f"{rate_sw / max(rate_load, 0.001):.2f} x (the load's share apart)")
                lines.append(f"{'':>5}           events delivered/s over all streams: {rate_sw:,.0f} "
                             f"vs bare {rate_bare:,.0f}, {rate_sw / max(rate_bare, 0.001):.2f} x; "
                             f"{n} snapshots served in {snaps_sw:.2f} s vs bare {snaps_bare:.2f} s, "
                             f"{snaps_bare / max(snaps_sw, 0.001):.2f} x the bare rate "
                             f"(goal at 1,000: >= 0.9 x on both)")
                lines.append(f"{'':>5}           server CPU per event delivered to a stream: "
                             f"{cpu_sw:.1f} us vs bare {cpu_bare:.1f} us, "
                             f"{cpu_sw / max(cpu_bare, 0.001):.2f} x (the orchestrator's includes "
                             f"running the job)")
                lines.append(f"{'':>5}           orchestrator RSS per idle watcher: "
                             f"{per_watcher:.0f} KiB (goal <= 48 KiB)")
    return lines


if __name__ == "__main__":
    print("\n".join(asyncio.run(main())))
