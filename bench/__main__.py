"""make bench: figures, each next to a reference measured in the same run.

- steps: steps/s for jobs of 100 and 2,000 independent `true` steps and a 2,000-step
  chain, in the sandbox (the default) and with --sandbox none, each next to its own
  command line spawned by a bare asyncio loop; GetJob p99 while the 2,000-step job runs
  next to the idle server's, and next to a bare grpc.aio server (its own process) polled at
  the same moments;
- stream: child transitions/s of a 5,000-child summarize step, and WatchJob
  replay events/s next to a bare grpc.aio stream of the same messages;
- fanout: 1, 100 and 1,000 watchers of a job at ~100 events/s (client processes): delay from
  emitted_at to receipt and the share delivered, next to a bare grpc.aio server pushing the
  same bytes; the orchestrator's RSS per idle watcher;
- engine: children/s of a 5,000- and a 50,000-child summarize step next to raw SQLAlchemy
  Core doing the same row writes;
- memory: RSS growth for 1 GB of stderr and a 1 GB file summarized;
- logs: lines/s of one step printing 100,000 lines, captured, stored and streamed, next to
  the same command writing them to a file;
- cli: `stepwatch watch` on a pty following a 300- and a 2,000-step job: how long after the job's
  terminal event it exits, and its CPU next to the server's;
- ui: the job page in headless Chromium: a 300-step job's render time next to a 1-step
  job's, and on a job at ~100 events/s how far the screen is behind the stream, with
  Chromium's CPU;
- executors: children/s of a 5,000-child `summarize` step and a 2,000-child `shell` step,
  in-process next to a real two-worker Dask cluster started by the bench;
- replicas: children/s of a 5,000-child `summarize` step on PostgreSQL next to SQLite, and
  jobs/s of one replica next to two on one database (`--db-url postgresql+psycopg://...`, or a
  PostgreSQL the bench starts itself);
- sandbox: `true` commands/s in the bubblewrap sandbox next to unconfined (`--sandbox none`),
  one at a time and 32 at a time;
- peer: a job summarizing 2,000 files next to Prefect 3's task map over the same files
  (Prefect from a venv of its own, ``.venv-peer``, made on first use).

`--quick` runs a smaller set (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio

from . import cli, engine, executors, fanout, logs, memory, peer, replicas, sandbox, steps, stream, ui


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--only", choices=["steps", "stream", "fanout", "engine", "memory", "logs", "cli", "ui",
                                       "executors", "replicas", "sandbox", "peer"],
                   help="run one section")
    p.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    p.add_argument("--files", type=int, default=5000)
    p.add_argument("--min-messages", type=int, default=20000)
    p.add_argument("--db-url", default=None,
                   help="a PostgreSQL server for the replicas section (a database is made there "
                        "per measurement); default: the bench starts its own")
    a = p.parse_args()
    sizes = [100, 500] if a.quick else [100, 2000]
    chain_len = 300 if a.quick else 2000
    sections: list[tuple[str, list[str]]] = []
    if a.only in (None, "steps"):
        lines = asyncio.run(steps.main(sizes, chain_len))
        print("\n".join(lines), flush=True)
        sections.append(("steps", lines))
    if a.only in (None, "stream"):
        lines = asyncio.run(stream.main(1000 if a.quick else a.files, a.min_messages,
                                        300 if a.quick else 2000))
        print("\n".join(lines), flush=True)
        sections.append(("stream", lines))
    if a.only in (None, "fanout"):
        lines = asyncio.run(fanout.main((1, 100) if a.quick else (1, 100, 1000),
                                        5 if a.quick else 10))
        print("\n".join(lines), flush=True)
        sections.append(("fanout", lines))
    if a.only in (None, "engine"):
        lines = asyncio.run(engine.main((2000,) if a.quick else (5000, 50_000)))
        print("\n".join(lines), flush=True)
        sections.append(("engine", lines))
    if a.only in (None, "memory"):
        lines = asyncio.run(memory.main(200_000_000 if a.quick else 1_000_000_000))
        print("\n".join(lines), flush=True)
        sections.append(("memory", lines))
    if a.only in (None, "logs"):
        lines = asyncio.run(logs.main(20_000 if a.quick else 100_000))
        print("\n".join(lines), flush=True)
        sections.append(("logs", lines))
    if a.only in (None, "cli"):
        lines = asyncio.run(cli.main(500 if a.quick else 2000))
        print("\n".join(lines), flush=True)
        sections.append(("cli", lines))
    if a.only in (None, "ui"):
        lines = asyncio.run(ui.main(10 if a.quick else 30))
        print("\n".join(lines), flush=True)
        sections.append(("ui", lines))
    if a.only in (None, "executors"):
        lines = asyncio.run(executors.main(1000 if a.quick else 5000, 500 if a.quick else 2000))
        print("\n".join(lines), flush=True)
        sections.append(("executors", lines))
    if a.only in (None, "replicas"):
        lines = asyncio.run(replicas.main(a.db_url, 1000 if a.quick else 5000, 1 if a.quick else 2))
        print("\n".join(lines), flush=True)
        sections.append(("replicas", lines))
    if a.only in (None, "sandbox"):
        lines = asyncio.run(sandbox.main(300 if a.quick else 1000))
        print("\n".join(lines), flush=True)
        sections.append(("sandbox", lines))
    if a.only in (None, "peer"):
        lines = asyncio.run(peer.main(500 if a.quick else 2000, 1 if a.quick else 2))
        print("\n".join(lines), flush=True)
        sections.append(("peer", lines))
    print("\n== summary ==")
    for name, lines in sections:
        print(f"[{name}]")
        for line in lines:
            print(f"  {line}")


if __name__ == "__main__":
    main()
