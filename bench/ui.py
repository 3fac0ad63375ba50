"""The job page in real headless Chromium, against a real orchestrator and UI service.

- render: seconds from navigation until every step row shows its server status, for a
  300-step job, next to a 1-step job measured in the same run (ratio; goal < 1 s and <= 3x);
- lag: on a job emitting about 100 events/s, for each event, the time from its
  `emitted_at` until the page showed that seq or a later one (p50/p99/max; goal p99 <= 1 s),
  with Chromium's CPU over the same window (all its processes, share of one core; goal < 50 %).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from selenium.webdriver.common.by import By

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.chromium import UI, cpu_seconds, lag, render_seconds, seen_seqs, start_browser, watch_seqs
from tests.procs import Orchestrator, run_job
from ui_service.pages.step_list import STEP_PAGE

ROUNDS = 3


def many_steps(n: int) -> str:
    return f'name = "wide{n}"\n' + "".join(
        f'[steps.s{i}]\ntype = "shell"\ncommands = ["true"]\n' for i in range(n))


def busy(steps: int, seconds: float) -> str:
    """Steps whose children end one after another (durations spread 0.3-1.0 s), so each
    step writes progress about every 0.1 s: `steps` x ~8 events a second."""
    per_step = int(seconds * 10)
    cmds = ", ".join(f'"sleep 0.{3 + i % 8}"' for i in range(per_step))
    return 'name = "busy"\n' + "".join(
        f'[steps.b{i}]\ntype = "shell"\nconcurrency = 6\ncommands = [{cmds}]\n'
        for i in range(steps))


def render(ui: UI, target: str) -> list[str]:
    small = run_job(target, 600, definition_toml=many_steps(1))
    big = run_job(target, 600, definition_toml=many_steps(300))
    driver = start_browser()
    try:
        one, wide = [], []
        for _ in range(ROUNDS):  # interleaved, so both see the same machine
            one.append(render_seconds(driver, f"{ui.url}/jobs/{small.job_id}", "[data-step-id]", 1))
            # The page draws its first page of rows; the pager says "of 300".
            wide.append(render_seconds(driver, f"{ui.url}/jobs/{big.job_id}", "[data-step-id]",
                                       STEP_PAGE))
            assert "of 300" in driver.find_element(By.CSS_SELECTOR, ".sw-pager").text
    finally:
        driver.quit()
    a, b = statistics.median(one), statistics.median(wide)
    return [f"render 300 steps: {b:.2f} s (median of {ROUNDS}); 1 step: {a:.2f} s; "
            f"ratio {b / a:.1f}x (goals: < 1 s, <= 3x; rows drawn {STEP_PAGE} at a time)"]


async def follow(target: str, job_id: str, emitted: dict[int, float]) -> None:
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.OrchestratorServiceStub(ch)
        async for r in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=600):
            if r.WhichOneof("kind") == "event":
                emitted[r.event.seq] = r.event.emitted_at.ToMicroseconds() / 1e6


def live(ui: UI, target: str, seconds: float) -> list[str]:
    driver = start_browser()
    try:
        with grpc.insecure_channel(target) as ch:
            job = pb_grpc.OrchestratorServiceStub(ch).SubmitJob(
                pb.SubmitJobRequest(definition_toml=busy(12, seconds)), timeout=60).job
        emitted: dict[int, float] = {}
        loop = asyncio.new_event_loop()
        stream = loop.run_in_executor(None, lambda: asyncio.run(follow(target, job.job_id, emitted)))
        driver.get(f"{ui.url}/jobs/{job.job_id}")
        watch_seqs(driver)
        cpu0, t0 = cpu_seconds(driver), time.monotonic()
        loop.run_until_complete(stream)
        cpu = (cpu_seconds(driver) - cpu0) / (time.monotonic() - t0)
        seen = seen_seqs(driver)
    finally:
        driver.quit()
    first = min(emitted) if emitted else 0
    window = [t for s, t in emitted.items() if s > first]
    rate = len(window) / (max(window) - min(window)) if len(window) > 1 else 0.0
    got = lag(emitted, seen)
    return [f"live job at {rate:.0f} events/s for {seconds:.0f} s: screen behind the stream "
            f"p50 {got.p50 * 1000:.0f} ms, p99 {got.p99 * 1000:.0f} ms, max {got.worst * 1000:.0f} ms "
            f"over {got.events} of {len(emitted)} events (goal p99 <= 1000 ms)",
            f"Chromium CPU during it: {cpu * 100:.0f} % of one core (goal < 50 %)"]


async def main(seconds: float = 30) -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        orch = await asyncio.to_thread(Orchestrator, f"sqlite:///{ws / 'ui.db'}", 0, None, ws)
        ui = await asyncio.to_thread(UI, orch.target)
        try:
            lines = await asyncio.to_thread(render, ui, orch.target)
            lines += await asyncio.to_thread(live, ui, orch.target, seconds)
        finally:
            ui.stop()
            orch.stop()
    return lines


if __name__ == "__main__":
    print("\n".join(asyncio.run(main())))
