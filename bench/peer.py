"""The peer measured before: Prefect 3's task map over the same 2,000 files next to a
stepwatch job summarizing them (a `scan_files` step, then `summarize`), each from the
call that starts it to its end, in the same run.

Prefect runs from a venv of its own (``.venv-peer``, made with pip on first use: its
dependencies are not ours) in its default local mode, an ephemeral API server on SQLite
and tasks on its thread pool; after a warm-up flow, so its server's start is not counted.
Stepwatch runs as a server process on a SQLite file, measured from SubmitJob to the end
of the job's WatchJob stream and its GetJob (tests.procs.run_job)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stepwatch.v1 import orchestrator_pb2 as pb
from tests.procs import REPO, Orchestrator, run_job

from .stream import make_files

VENV = REPO / ".venv-peer"
PREFECT = "prefect>=3,<4"
JOB = ('name = "peer"\n[steps.scan]\ntype = "scan_files"\ninclude = ["files/*.txt"]\n'
       '[steps.s]\ntype = "summarize"\ndepends = ["scan"]\nconcurrency = 32\n')


def peer_python() -> Path:
    """The peer venv's interpreter, with Prefect 3 installed (made once)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if subprocess.run([str(python), "-c", "import prefect"], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", PREFECT], check=True)
    return python


def prefect_seconds(python: Path, files: list[Path], home: Path) -> float:
    out = subprocess.run(
        [str(python), str(Path(__file__).with_name("peer_prefect.py"))],
        input="\n".join(map(str, files)), capture_output=True, text=True, timeout=1800,
        env={**os.environ, "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "WARNING"})
    m = re.search(r"PREFECT_SECONDS ([0-9.]+)", out.stdout)
    if m is None:
        raise RuntimeError(f"the Prefect flow did not finish (exit {out.returncode}):\n"
                           f"{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return float(m[1])


def stepwatch_seconds(ws: Path, n: int, db: str) -> float:
    orch = Orchestrator(f"sqlite:///{ws / db}", 0, None, ws)
    try:
        start = time.perf_counter()
        job = run_job(orch.target, timeout=1800, definition_toml=JOB)
        took = time.perf_counter() - start
        done = next(s for s in job.steps if s.name == "s").children.completed
        if job.status != pb.JOB_STATUS_COMPLETED or done != n:
            raise RuntimeError(f"the stepwatch job did not summarize {n} files: "
                               f"{pb.JobStatus.Name(job.status)}, {done} completed")
        return took
    finally:
        orch.stop()


async def main(n: int = 2000, rounds: int = 2) -> list[str]:
    python = await asyncio.to_thread(peer_python)
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        make_files(ws, n)
        files = sorted((ws / "files").iterdir())
        pairs = []
        for r in range(rounds):
            sw = await asyncio.to_thread(stepwatch_seconds, ws, n, f"peer{r}.db")
            pf = await asyncio.to_thread(prefect_seconds, python, files, ws / f"pf{r}")
            pairs.append((sw, pf))
    ratios = sorted(pf / sw for sw, pf in pairs)
    lines = [f"{n:,} files, round {i + 1}: stepwatch job {sw:.2f} s ({n / sw:,.0f} files/s), "
             f"Prefect 3 task map {pf:.2f} s ({n / pf:,.0f} files/s); {pf / sw:.0f} x"
             for i, (sw, pf) in enumerate(pairs)]
    lines.append(f"stepwatch / Prefect 3, files/s: {', '.join(f'{r:.0f}' for r in ratios)} x "
                 f"(goal >= 25 x)")
    return lines


if __name__ == "__main__":
    print("\n".join(asyncio.run(main())))
