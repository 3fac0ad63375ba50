"""Chaos: SIGKILL the orchestrator at random moments while shell steps run, restart it each time.

Each command holds a per-child lock (``flock -n``) while it runs and logs OVERLAP
if it finds the lock taken: a command of a previous attempt still alive beside
the new one. Then: every job terminal, no overlap, no command from before a kill
alive after the restart's recovery nor at the end, every watcher saw each seq once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path

import pytest
from sqlalchemy import make_url

from orchestrator_service.leases import default_replica_name
from orchestrator_service.processes import marked, owner_key
from stepwatch.client import Backoff, Client
from stepwatch.jobview import apply_event, is_terminal
from stepwatch.v1 import orchestrator_pb2 as pb
from tests.procs import Orchestrator, free_port

# Run alone (make test's second pass): SIGKILL storms: it is the load.
pytestmark = pytest.mark.serial

KILLS = int(os.environ.get("STEPWATCH_CHAOS_KILLS", "5"))
JOBS = 6
DEADLINE = 120


def definition(i: int, ws: Path) -> str:
    steps = []
    for s in range(3):
        cmds = []
        for c in range(3):
            lock = ws / "locks" / f"j{i}s{s}c{c}"
            body = (f"echo start j{i}s{s}c{c} $STEPWATCH_ATTEMPT $$ >> {ws}/runs.log; "
                    f"sleep 0.{random.randint(2, 6)}; "
                    f"echo end j{i}s{s}c{c} $STEPWATCH_ATTEMPT $$ >> {ws}/runs.log")
            cmds.append(f"flock -n {lock} sh -c '{body}' || echo OVERLAP j{i}s{s}c{c} >> {ws}/runs.log")
        quoted = ", ".join('"' + c.replace('"', '\\"') + '"' for c in cmds)
        steps.append(f'[steps.s{s}]\ntype = "shell"\ncommands = [{quoted}]\nconcurrency = 1\n'
                     f'max_attempts = 4\n')
    return f'name = "chaos_{i}"\n[policy]\non_step_failure = "continue"\n' + "".join(steps)


def marker_of(db_url: str, port: int) -> str:
    """What the server's commands are marked with: its database (and replica name, host:port)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return os.path.abspath(str(url.database))
    return f"{url.render_as_string(hide_password=True)}|{default_replica_name(port)}"


def ours(owner: str) -> set[int]:
    return set(marked(owner))


async def test_sigkill_storm_runs_nothing_twice_and_leaves_nothing_behind(tmp_path: Path,
                                                                          db_url: str) -> None:
    ws = tmp_path / "ws"
    (ws / "locks").mkdir(parents=True)
    port = free_port()
    owner = owner_key(marker_of(db_url, port))
    server = await asyncio.to_thread(Orchestrator, db_url, port, None, ws)
    seen: dict[str, list[pb.WatchJobResponse]] = {}
    survivors: list[str] = []
    try:
        async with Client(server.target) as client:
            jobs = [await client.submit(definition_toml=definition(i, ws)) for i in range(JOBS)]

            async def follow(job_id: str) -> pb.Job:
                state = pb.Job()
                got = seen.setdefault(job_id, [])
                async for msg in client.watch(job_id, backoff=Backoff(0.05, 0.5)):
                    got.append(msg)
                    if msg.WhichOneof("kind") == "snapshot":
                        state = msg.snapshot.job
                    elif msg.WhichOneof("kind") == "event":
                        state = apply_event(state, msg.event)
                return state

            watchers = [asyncio.create_task(follow(j.job_id)) for j in jobs]
            for _ in range(KILLS):
                await asyncio.sleep(random.uniform(0.3, 1.5))  # a random moment, not an event
                before = ours(owner)
                server.stop(signal.SIGKILL)
                server = await asyncio.to_thread(Orchestrator, db_url, port, None, ws)
                # Recovery ran before the server said it listens: nothing from before is alive.
                survivors += [f"pid {p}" for p in before & ours(owner)]
            async with asyncio.timeout(DEADLINE):
                finals = await asyncio.gather(*watchers)
            answers = [await client.get_job(j.job_id) for j in jobs]
    finally:
        server.stop()
    left = ours(owner)
    for pid in left:  # never leave them to the next test
        os.kill(pid, signal.SIGKILL)

    assert not survivors, f"commands from before a kill still ran after recovery: {survivors}"
    assert not left, f"commands still running at the end: {left}"
    log = (ws / "runs.log").read_text()
    assert "OVERLAP" not in log, [line for line in log.splitlines() if "OVERLAP" in line]
    assert log.count("start ") >= JOBS * 9 // 2  # the commands really ran
    for job, final, answer in zip(jobs, finals, answers, strict=True):
        assert is_terminal(answer) and final == answer
        msgs = seen[job.job_id]
        seqs = [m.event.seq for m in msgs if m.WhichOneof("kind") == "event"]
        assert msgs[0].WhichOneof("kind") == "snapshot"
        assert seqs == list(range(msgs[0].snapshot.seq + 1, answer.head_seq + 1))
        for s in answer.steps:
            assert s.children.pending == s.children.running == 0
