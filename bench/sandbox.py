"""What the command sandbox costs: `true` commands per second with bubblewrap (the default)
next to `--sandbox none`, in the same run, at concurrency 1 (the cost of one command) and
32 (throughput), each through a real orchestrator and its WatchJob stream."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.procs import Orchestrator

from .executors import children_per_s


def job(n: int, concurrency: int) -> str:
    cmds = ", ".join(['"true"'] * n)
    return (f'name = "sb"\n[steps.s]\ntype = "shell"\nconcurrency = {concurrency}\n'
            f'commands = [{cmds}]\n')


async def main(n: int = 1000) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        rates: dict[tuple[str, int], float] = {}
        for kind in ("bwrap", "none"):
            orch = Orchestrator(f"sqlite:///{ws / f'{kind}.db'}", workspace=ws,
                                extra=["--sandbox", kind])
            try:
                for concurrency in (1, 32):
                    size = max(100, n // 5) if concurrency == 1 else n
                    _, rates[kind, concurrency] = await children_per_s(orch.target,
                                                                       job(size, concurrency))
            finally:
                orch.stop()
        for concurrency in (1, 32):
            sb, bare = rates["bwrap", concurrency], rates["none", concurrency]
            lines.append(f"sandbox: `true` commands/s at concurrency {concurrency:>2}: "
                         f"{sb:,.0f} in bubblewrap vs {bare:,.0f} unconfined "
                         f"(ratio {sb / bare:.2f}; +{1000 / sb - 1000 / bare:.1f} ms per command "
                         "one at a time)" if concurrency == 1 else
                         f"sandbox: `true` commands/s at concurrency {concurrency:>2}: "
                         f"{sb:,.0f} in bubblewrap vs {bare:,.0f} unconfined (ratio {sb / bare:.2f})")
    return lines
