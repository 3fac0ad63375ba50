"""SIGKILL the orchestrator while shell steps run; restart it on the same database.

The interrupted steps are handled as the rules say (a new attempt if attempts
remain, else FAILED with ORCHESTRATOR_RESTARTED), and a watcher that follows
the job through the crash sees every seq exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

from stepwatch.client import Backoff, Client
from stepwatch.jobview import apply_event
from stepwatch.v1 import orchestrator_pb2 as pb
from tests.procs import Orchestrator, free_port, kill_process_groups_matching

DEADLINE = 60


async def test_sigkill_mid_job_then_restart(tmp_path: Path, db_url: str) -> None:
    marker = f"stepwatch-kill-{uuid.uuid4().hex}"
    db = db_url
    port = free_port()
    flag = tmp_path / "attempted"
    toml = f'''
name = "kill_me"
[policy]
on_step_failure = "continue"
[steps.killed]
type = "shell"
commands = ["sleep 30; echo {marker}"]
[steps.retried]
type = "shell"
commands = ["test -f {flag} || {{ touch {flag}; sleep 30; echo {marker}; }}"]
max_attempts = 2
[steps.after]
type = "shell"
commands = ["true"]
depends = ["killed"]
'''
    server = await asyncio.to_thread(Orchestrator, db, port)
    seen: list[pb.WatchJobResponse] = []
    both_running = asyncio.Event()
    try:
        async with Client(server.target) as client:
            job = await client.submit(definition_toml=toml)

            async def follow() -> pb.Job:
                state = pb.Job()
                async for msg in client.watch(job.job_id, backoff=Backoff(0.05, 0.5)):
                    seen.append(msg)
                    kind = msg.WhichOneof("kind")
                    if kind == "snapshot":
                        state = msg.snapshot.job
                    elif kind == "event":
                        state = apply_event(state, msg.event)
                    running = {s.name for s in state.steps if s.children.running == 1}
                    if {"killed", "retried"} <= running:
                        both_running.set()
                return state

            watcher = asyncio.create_task(follow())
            async with asyncio.timeout(DEADLINE):
                await both_running.wait()
            server.stop(signal.SIGKILL)
            assert server.popen.returncode == -signal.SIGKILL
            server = await asyncio.to_thread(Orchestrator, db, port)
            async with asyncio.timeout(DEADLINE):
                followed = await watcher
            final = await client.get_job(job.job_id)
    finally:
        server.stop()
        kill_process_groups_matching(marker)

    # The watcher saw each seq once, in order, from its snapshot to the head.
    assert seen[0].WhichOneof("kind") == "snapshot"
    seqs = [m.event.seq for m in seen if m.WhichOneof("kind") == "event"]
    assert seqs == list(range(seen[0].snapshot.seq + 1, final.head_seq + 1))
    assert followed == final

    steps = {s.name: s for s in final.steps}
    assert steps["killed"].status == pb.STEP_STATUS_FAILED
    assert steps["killed"].failure.reason == pb.FAILURE_REASON_ORCHESTRATOR_RESTARTED
    assert steps["killed"].tolerated
    assert steps["retried"].status == pb.STEP_STATUS_COMPLETED and steps["retried"].attempt == 2
    retried_events = [m.event.step_changed for m in seen if m.WhichOneof("kind") == "event"
                      and m.event.step_changed.name == "retried"]
    assert any(s.status == pb.STEP_STATUS_RUNNING and s.previous_attempt_failure.reason ==
               pb.FAILURE_REASON_ORCHESTRATOR_RESTARTED for s in retried_events)
    assert steps["after"].status == pb.STEP_STATUS_SKIPPED
    assert final.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES
