"""Run by bench/peer.py in a venv of its own (Prefect 3 is not one of our dependencies):
Prefect's task map over the files named on stdin, one task per file counting what
stepwatch's `summarize` counts. Prints the seconds from the flow's call to its end."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prefect import flow, task


@task
def summarize(path: str) -> dict[str, int]:
    data = Path(path).read_bytes()
    text = data.decode()
    return {"lines": text.count("\n"), "words": len(text.split()), "bytes": len(data)}


@flow
def summarize_all(paths: list[str]) -> int:
    return len([f.result() for f in summarize.map(paths)])


if __name__ == "__main__":
    files = sys.stdin.read().split("\n")
    summarize_all(files[:10])  # warm: Prefect's local API server starts on first use
    start = time.perf_counter()
    done = summarize_all(files)
    took = time.perf_counter() - start
    assert done == len(files), (done, len(files))
    print(f"PREFECT_SECONDS {took:.6f}", flush=True)
