"""A command cannot reach the orchestrator that runs it: not its environment or memory, not
its token file, not its database, not its process (no signal). Commands run in a bubblewrap
sandbox by default; the opt-out warns at every start. A real server, real commands."""

from __future__ import annotations

import os
import re
from pathlib import Path

import grpc

from stepwatch.tokens import new_token
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator
from tests.support import until

DEADLINE = 60
SECRET = "s3cret-aws-key-0123456789"


def run(orch: Orchestrator, token: str, commands: list[str]) -> tuple[pb.Job, str]:
    """Run the commands as one step; the job and everything they printed."""
    quoted = ", ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in commands)
    auth = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(orch.target) as ch:
        stub = pb_grpc.OrchestratorServiceStub(ch)
        job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
            f'name = "probe"\n[policy]\non_step_failure = "continue"\n[steps.p]\ntype = "shell"\n'
            f'max_child_failures = 1000\ncommands = [{quoted}]\n')), timeout=DEADLINE,
            metadata=auth).job
        for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE,
                               metadata=auth):
            pass
        job = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE, metadata=auth).job
        text = "".join(m.chunk.text for m in stub.WatchLogs(
            pb.WatchLogsRequest(job_id=job.job_id, step="p"), timeout=DEADLINE, metadata=auth)
            if m.WhichOneof("kind") == "chunk")
        return job, text


def start(tmp_path: Path, *extra: str) -> tuple[Orchestrator, str, Path, Path]:
    token, line = new_token("admin", "tester")
    tokens = tmp_path / "tokens"
    tokens.write_text(line + "\n")
    tokens.chmod(0o600)
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    db = workspace / "inside.db"  # the worst case: the database inside the workspace
    env = {"AWS_SECRET_ACCESS_KEY": SECRET, "STEPWATCH_TOKEN": token}
    orch = Orchestrator(f"sqlite:///{db}", workspace=workspace, env=env,
                        extra=["--auth-token-file", str(tokens), *extra])
    return orch, token, tokens, db


def test_a_command_cannot_read_or_signal_the_orchestrator(tmp_path: Path) -> None:
    orch, token, tokens, db = start(tmp_path)
    pid = orch.popen.pid
    try:
        job, out = run(orch, token, [
            "cat /proc/$PPID/environ; cat /proc/1/environ; cat /proc/*/environ; true",
            f"cat /proc/{pid}/environ; cat /proc/{pid}/cmdline; head -c 64 /proc/{pid}/mem; true",
            f"cat {tokens}; cat {db} | head -c 16; cat inside.db | head -c 16; "
            "cat inside.db-wal | head -c 16; true",
            f"kill -HUP $PPID; kill -HUP {pid}; kill -TERM {pid}; kill -0 {pid} && "
            "echo SIGNAL-DELIVERED; true",
            # One line: another command's output may come between two lines of this one.
            "echo \"$(ls /proc | grep -c '^[0-9]') pids-seen\"",
            "echo made > made.txt && cat made.txt",  # the workspace itself is there
        ])
        assert job.status == pb.JOB_STATUS_COMPLETED, job
        assert SECRET not in out and token not in out, out
        assert tokens.read_text().split()[1] not in out  # the token file's hash line
        assert "SQLite format" not in out, out
        assert "SIGNAL-DELIVERED" not in out
        assert "made" in out and (tmp_path / "ws" / "made.txt").read_text() == "made\n"
        seen = int(re.search(r"(\d+) pids-seen", out).group(1))  # type: ignore[union-attr]
        assert seen <= 5, out  # its own sandbox's processes only (init, sh, $(...), ls, grep)
        assert orch.popen.poll() is None  # alive,
        assert orch.output.count(" tokens from ") == 1  # the SIGHUP never reached it: no reload
    finally:
        orch.stop()


def test_the_opt_out_warns_at_every_start_and_commands_then_see_the_server(tmp_path: Path) -> None:
    orch, token, _, _ = start(tmp_path, "--sandbox", "none")
    try:
        assert re.search(r"WARNING.*--sandbox none", orch.output), orch.output
        _, out = run(orch, token, ["cat /proc/$PPID/cmdline | tr '\\0' ' '; echo"])
        assert "orchestrator_service" in out  # unconfined: what the sandbox prevents
    finally:
        orch.stop()


def test_commands_end_with_their_sandbox_when_the_orchestrator_is_killed(tmp_path: Path) -> None:
    orch, token, _, _ = start(tmp_path)
    sleep = f"sleep 29.{os.getpid() % 997:03d}"  # this test's commands, told from any other
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                'name = "tree"\n[steps.t]\ntype = "shell"\n'
                f'commands = ["sh -c \'{sleep} & {sleep}\'; {sleep}"]\n')),
                timeout=DEADLINE, metadata=[("authorization", f"Bearer {token}")])
        until(lambda: len(pids_of(sleep)) >= 2, "the commands to start", DEADLINE)
        orch.popen.kill()
        orch.popen.wait(DEADLINE)
        until(lambda: not pids_of(sleep), "no command to outlive its orchestrator", 1.0)
    finally:
        orch.stop()


def pids_of(needle: str) -> list[int]:
    """Live (not zombie) processes whose command line holds ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmd and state != "Z" and "bwrap" not in cmd:
            found.append(int(entry.name))
    return found
