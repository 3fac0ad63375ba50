"""Steps per second for big jobs, and GetJob latency while the biggest one runs.

A real orchestrator process on a real SQLite file; jobs of N independent `shell`
steps running `true`, and a chain of steps each depending on the one before.
The reference, measured in the same run, is the machine's own floor for the
same work: asyncio spawning the same `true` commands, as many at once as the
orchestrator's slots allow, with no orchestration at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from orchestrator_service.sandbox import NONE as NO_SANDBOX
from orchestrator_service.sandbox import Sandbox
from orchestrator_service.step_types.shell import command_argv
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import REPO, Orchestrator

from .bare import announced
from .cpu import cpu_s, machine_busy_s

TERMINAL = {pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_COMPLETED_WITH_FAILURES, pb.JOB_STATUS_FAILED,
            pb.JOB_STATUS_CANCELLED}
SLOTS = 64


def independent(n: int) -> str:
    return f'name = "flat_{n}"\n' + "".join(
        f'[steps.s{i}]\ntype = "shell"\ncommands = ["true"]\n' for i in range(n))


def children(n: int) -> str:
    """One step of n `true` commands, SLOTS at a time."""
    cmds = ", ".join(['"true"'] * n)
    return (f'name = "children_{n}"\n[steps.a]\ntype = "shell"\nconcurrency = {SLOTS}\n'
            f'commands = [{cmds}]\n')


def chain(n: int) -> str:
    return f'name = "chain_{n}"\n' + "".join(
        f'[steps.s{i}]\ntype = "shell"\ncommands = ["true"]\n'
        + (f'depends = ["s{i - 1}"]\n' if i else "") for i in range(n))


@dataclass
class Cpu:
    """CPU seconds over one measurement: the orchestrator's, and the machine's (every
    process, the commands and the bench's own client included)."""

    server: float = 0.0
    machine: float = 0.0


@dataclass
class Run:
    label: str
    steps: int
    seconds: float
    events: int
    status: str
    cpu: Cpu = field(default_factory=Cpu)

    @property
    def rate(self) -> float:
        return self.steps / self.seconds

    def cpu_line(self, bare_machine: float) -> str:
        """Where the ratio comes from when the machine is the limit: the CPU a step costs
        against what the bare loop's command cost the machine (both cores busy, the ratio
        is about their quotient)."""
        per = 1000 / self.steps
        return (f"CPU a step: server {self.cpu.server * per:.2f} ms, machine "
                f"{self.cpu.machine * per:.2f} ms (bare: {bare_machine * 1000:.2f} ms a command, "
                f"{bare_machine * self.steps / max(self.cpu.machine, 1e-9):.2f} x)")


@contextlib.contextmanager
def counting(pid: int, into: Cpu) -> Iterator[None]:
    """Add the CPU that process ``pid`` and the machine spend in the block to ``into``."""
    server, machine = cpu_s(pid), machine_busy_s()
    try:
        yield
    finally:
        into.server += cpu_s(pid) - server
        into.machine += machine_busy_s() - machine


@dataclass
class Latency:
    label: str
    calls: list[tuple[float, float]]  # (seconds into the run, latency)

    def line(self) -> str:
        if not self.calls:
            return f"GetJob {self.label}: no samples"
        samples = [lat for _, lat in self.calls]
        q = statistics.quantiles(samples, n=100, method="inclusive")
        worst = ", ".join(f"{lat * 1000:.0f} ms at {t:.1f} s"
                          for t, lat in sorted(self.calls, key=lambda c: -c[1])[:3])
        return (f"GetJob {self.label}: {len(samples)} calls, p50 {q[49] * 1000:.1f} ms, "
                f"p99 {q[98] * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms (worst: {worst})")


async def run_job(stub: pb_grpc.OrchestratorServiceStub, label: str, toml: str,
                  steps: int, server_pid: int) -> tuple[Run, str]:
    cpu = Cpu()
    with counting(server_pid, cpu):
        start = time.perf_counter()
        job = (await stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=600)).job
        events = 0
        status = 0
        async for r in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id,
                                                        after_seq=job.head_seq), timeout=3600):
            if r.WhichOneof("kind") == "event":
                events += 1
                if r.event.HasField("job_changed") and r.event.job_changed.status in TERMINAL:
                    status = r.event.job_changed.status
        took = time.perf_counter() - start
    return Run(label, steps, took, events, pb.JobStatus.Name(status), cpu), job.job_id


async def get_loop(stub: pb_grpc.OrchestratorServiceStub, job_id: str, stop: asyncio.Event,
                   out: list[tuple[float, float]], start: float) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=120)
        out.append((t - start, time.perf_counter() - t))
        await asyncio.sleep(0.05)  # a polling client's pace, not a wait for an event


@dataclass
class Reference:
    rate: float  # commands a second
    machine: float  # the machine's CPU seconds a command (the command and its spawner)


async def reference(n: int, at_once: int, argv: list[str]) -> Reference:
    """``argv`` spawned n times, at_once at a time, by asyncio alone."""
    sem = asyncio.Semaphore(at_once)

    async def one() -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
            await proc.communicate()

    start, busy = time.perf_counter(), machine_busy_s()
    await asyncio.gather(*(one() for _ in range(n)))
    return Reference(n / (time.perf_counter() - start), (machine_busy_s() - busy) / n)


async def idle_getjob(stub: pb_grpc.OrchestratorServiceStub, job_id: str, label: str,
                      calls: int = 300) -> Latency:
    """GetJob of a finished 1-step job on an idle machine: the latency floor."""
    out: list[tuple[float, float]] = []
    start = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        await stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=60)
        out.append((t - start, time.perf_counter() - t))
    return Latency(label, out)


@contextlib.asynccontextmanager
async def bare_getjob(ws: Path, answer: pb.GetJobResponse) -> AsyncIterator[str]:
    """A bare grpc.aio server (bench/getjob_bare.py) answering GetJob with ``answer``'s
    bytes, in a process of its own: its address."""
    path = ws / "getjob.bin"
    path.write_bytes(answer.SerializeToString())
    proc = subprocess.Popen([sys.executable, "-m", "bench.getjob_bare", str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield announced(await asyncio.to_thread(proc.stdout.readline))
    finally:
        proc.kill()
        proc.wait()


def p99(lat: Latency) -> float:
    return statistics.quantiles([x for _, x in lat.calls], n=100, method="inclusive")[98]


@dataclass
class Measured:
    runs: list[Run]
    #: Stepwatch's GetJob: idle, then of a 1-step job and of the big job during its run.
    latencies: list[Latency]
    #: The bare server's GetJob of the same bytes: idle, then during the same run.
    bare: list[Latency]


async def one_server(ws: Path, sandbox: str, sizes: list[int], chain_len: int) -> Measured:
    """Jobs on one orchestrator; GetJob latency on it idle, then during the biggest job, next
    to a bare server's at the same moments."""
    server = await asyncio.to_thread(Orchestrator, f"sqlite:///{ws / f'steps-{sandbox}.db'}", 0,
                                     None, ws, extra=["--sandbox", sandbox, "--max-steps",
                                                      str(max(*sizes, chain_len, 1000))])
    try:
        async with contextlib.AsyncExitStack() as stack:
            ch = await stack.enter_async_context(grpc.aio.insecure_channel(
                server.target, options=[("grpc.max_receive_message_length", 64 << 20)]))
            stub = pb_grpc.OrchestratorServiceStub(ch)
            pid = server.popen.pid
            small, small_id = await run_job(stub, "1 step", independent(1), 1, pid)
            runs = [small]
            latencies = [await idle_getjob(stub, small_id, "of a 1-step job on the idle server")]
            answer = await stub.GetJob(pb.GetJobRequest(job_id=small_id))
            bare_at = await stack.enter_async_context(bare_getjob(ws, answer))
            bare_ch = await stack.enter_async_context(grpc.aio.insecure_channel(bare_at))
            bare_stub = pb_grpc.OrchestratorServiceStub(bare_ch)
            bare = [await idle_getjob(bare_stub, small_id, "of a bare server, machine idle")]
            for n in sizes:
                if n != max(sizes):
                    runs.append((await run_job(stub, f"{n:,} independent", independent(n), n, pid))[0])
                    continue
                stop = asyncio.Event()
                big: list[tuple[float, float]] = []
                little: list[tuple[float, float]] = []
                beside: list[tuple[float, float]] = []
                begun = time.perf_counter()
                job_task = asyncio.create_task(
                    run_job(stub, f"{n:,} independent", independent(n), n, pid))
                # GetJob of the running big job needs its id: take it from the list.
                big_id = ""
                while not big_id:
                    jobs = (await stub.ListJobs(pb.ListJobsRequest(page_size=1))).jobs
                    if jobs and jobs[0].definition_name == f"flat_{n}":
                        big_id = jobs[0].job_id
                    else:
                        await asyncio.sleep(0.05)  # the submit is being stored
                loops = [asyncio.create_task(get_loop(stub, small_id, stop, little, begun)),
                         asyncio.create_task(get_loop(stub, big_id, stop, big, begun)),
                         asyncio.create_task(get_loop(bare_stub, small_id, stop, beside, begun))]
                run, _ = await job_task
                stop.set()
                await asyncio.gather(*loops)
                runs.append(run)
                latencies += [Latency(f"of a 1-step job during the {n:,}-step run", little),
                              Latency(f"of the running {n:,}-step job itself", big)]
                bare.append(Latency(f"of a bare server during the {n:,}-step run", beside))
            runs.append((await run_job(stub, f"{chain_len:,}-step chain", chain(chain_len),
                                       chain_len, pid))[0])
            kids = max(sizes)
            run, _ = await run_job(stub, f"{kids:,} children, 1 step", children(kids), kids, pid)
            runs.append(run)
    finally:
        server.stop()
    return Measured(runs, latencies, bare)


async def main(sizes: list[int], chain_len: int) -> list[str]:
    """On the server's default (every command in the bubblewrap sandbox), next to the same
    sandboxed command line spawned bare; and with --sandbox none, next to `sh -c true`
    spawned bare: the orchestration's cost either way."""
    lines: list[str] = []
    argvs = {"bwrap": command_argv("true", None, Sandbox(kind="bwrap"), Path.cwd()),
             "none": command_argv("true", None, NO_SANDBOX, Path.cwd())}
    plain = ["/bin/sh", "-c", "true"]
    with tempfile.TemporaryDirectory() as d:
        for sandbox in ("bwrap", "none"):
            ref_flat = await reference(2000, SLOTS, argvs[sandbox])
            ref_chain = await reference(500, 1, argvs[sandbox])
            bare_flat, bare_chain = await reference(2000, SLOTS, plain), await reference(500, 1, plain)
            m = await one_server(Path(d), sandbox, sizes, chain_len)
            runs, latencies = m.runs, m.latencies
            lines.append(f"--sandbox {sandbox}: reference, its own command line spawned by asyncio "
                         f"alone ({' '.join(argvs[sandbox][:2])} ...): {SLOTS} at a time "
                         f"{ref_flat.rate:,.0f}/s, one at a time {ref_chain.rate:,.0f}/s; bare "
                         f"`sh -c true` {bare_flat.rate:,.0f}/s and {bare_chain.rate:,.0f}/s")
            for r in runs:
                ref, bare = (ref_chain, bare_chain) if "chain" in r.label else (ref_flat, bare_flat)
                unit = "children" if "children" in r.label else "steps"
                lines.append(f"  {r.label:>22}: {r.steps:>6,} {unit} in {r.seconds:7.2f} s -> "
                             f"{r.rate:7,.0f} {unit}/s ({r.rate / ref.rate:.2f} x its command "
                             f"spawned bare, {r.rate / bare.rate:.2f} x `sh -c true`), "
                             f"{r.events:,} events, {r.status}")
                if r.steps > 1:
                    lines.append(f"  {'':>22}  {r.cpu_line(ref.machine)}")
            lines += [f"  {lat.line()}" for lat in [*latencies, *m.bare]]
            idle, during = latencies[0], latencies[-2:]
            bare_idle, bare_during = m.bare
            lines.append(f"  GetJob p99 while the {max(sizes):,}-step job runs / idle: "
                         + ", ".join(f"{p99(x) / p99(idle):.1f} x" for x in during)
                         + " (goal <= 3 x); the bare server's, same moments: "
                         f"{p99(bare_during) / p99(bare_idle):.1f} x (what the load leaves any "
                         "server); Stepwatch's p99 / the bare server's during the run: "
                         + ", ".join(f"{p99(x) / p99(bare_during):.1f} x" for x in during))
    return lines
