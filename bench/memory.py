"""Memory: the server's RSS growth while a command prints 1 GB to stderr, and while
`summarize` reads a 1 GB file. Reference: the same data's size (what an unbounded
reader would hold)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from orchestrator_service.broker import Broker
from orchestrator_service.definitions import parse_definition
from orchestrator_service.engine import Engine, RunConfig
from orchestrator_service.step_types import load_step_types
from orchestrator_service.store import Store
from tests.memory import peak_rss_growth

GB = 1_000_000_000


async def _peak_growth(engine: Engine, toml: str) -> tuple[int, str]:
    with peak_rss_growth(0.01) as grew:
        job = await engine.submit(parse_definition(toml, engine.config.step_types), toml)
        await engine.wait(job.job_id)
    done = await engine.store.reads.get_job(job.job_id)
    return grew[0], f"{done.steps[-1].name} {done.steps[-1].status.name}"


async def main(size: int = GB) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        subprocess.run(["dd", "if=/dev/zero", f"of={ws / 'big.txt'}", "bs=1M",
                        f"count={size // 1_000_000}", "status=none"], check=True)
        store = Store(f"sqlite:///{ws / 'm.db'}")
        store.migrate()
        store.listeners.events = Broker().publish
        engine = Engine(store, load_step_types(), RunConfig(ws))
        try:
            stderr = (f'name = "loud"\n[steps.loud]\ntype = "shell"\ncommands = '
                      f'["head -c {size} /dev/zero | tr \\"\\\\\\\\0\\" x >&2; exit 1"]\n')
            grew, how = await _peak_growth(engine, stderr)
            lines.append(f"1 command printing {size / 1e9:.1f} GB to stderr: RSS grew "
                         f"{grew / 2**20:.1f} MiB ({how}; reference: the output is "
                         f"{size / 2**20:,.0f} MiB, ratio {grew / size:.4f})")
            summarize = ('name = "big"\n[steps.scan]\ntype = "scan_files"\ninclude = ["big.txt"]\n'
                         '[steps.sum]\ntype = "summarize"\ndepends = ["scan"]\n')
            grew, how = await _peak_growth(engine, summarize)
            lines.append(f"summarize of a {size / 1e9:.1f} GB file: RSS grew {grew / 2**20:.1f} MiB "
                         f"({how}; ratio to the file {grew / size:.4f})")
        finally:
            await engine.stop()
            store.close()
    return lines
