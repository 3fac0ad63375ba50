"""The CLI's children, logs and documents commands, and id prefixes, against real servers."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.procs import REPO, Orchestrator, Proc, free_port
from tests.support import finish_at as finish
from tests.support import submit_at as submit

STEPWATCH = str(Path(sys.executable).parent / "stepwatch")
DEADLINE = 60


def cli(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPWATCH_TARGET": target, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([STEPWATCH, *args], capture_output=True, text=True, env=env,
                          timeout=DEADLINE, cwd=REPO)


def test_logs_follow_through_a_server_restart_prints_every_line_once(tmp_path: Path,
                                                                     db_url: str) -> None:
    db, port, flag = db_url, free_port(), tmp_path / "go-on"
    toml = ('name = "restart_logs"\n[steps.s]\ntype = "shell"\nmax_attempts = 2\ncommands = ["'
            'for i in $(seq 1 20); do echo line $i; done; echo oops >&2; '
            f'while [ ! -f {flag} ]; do sleep 0.05; done; echo after-restart"]\n')
    server = Orchestrator(db, port=port, workspace=tmp_path)
    follower: Proc | None = None
    try:
        job = submit(server.target, toml)
        follower = Proc([STEPWATCH, "--target", server.target, "logs", job.job_id[:8], "s",
                         "--follow"], cwd=REPO, env={"COLUMNS": "200", "NO_COLOR": "1"})
        follower.wait_for(re.compile(r"stderr\| oops"), DEADLINE)
        assert server.stop() == 0  # graceful: the log stream ends UNAVAILABLE, the client waits
        server = Orchestrator(db, port=port, workspace=tmp_path)  # attempt 1 ends; 2 starts
        flag.touch()
        end = time.monotonic() + DEADLINE
        while follower.popen.poll() is None and time.monotonic() < end:
            time.sleep(0.05)  # the follower exits once attempt 1 is over
        # The attempt it followed ended FAILED (the orchestrator stopped under it): exit 1,
        # after a last line that says so.
        assert follower.popen.returncode == 1, follower.output
        assert follower.output.rstrip().splitlines()[-1].startswith("s attempt 1: Failed ("), \
            follower.output
        lines = [line.removeprefix("[0] ") for line in follower.output.splitlines()
                 if line.startswith("[0] line ")]
        assert lines == [f"line {i}" for i in range(1, 21)], follower.output
        assert "after-restart" not in follower.output  # that was attempt 2's
        assert finish(server.target, job.job_id).steps[0].attempt == 2
    finally:
        if follower is not None:
            follower.stop()
        server.stop()


def test_children_logs_documents_and_prefixes(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one two\nthree\n")
    server = Orchestrator(f"sqlite:///{tmp_path / 'c.db'}", workspace=tmp_path)
    try:
        job = submit(server.target, 'name = "mixed"\n[steps.cmds]\ntype = "shell"\ncommands = '
                     '["echo fine", "echo bad >&2; exit 4", "echo 7"]\nmax_child_failures = 1\n'
                     '[steps.scan]\ntype = "scan_files"\ninclude = ["*.txt"]\n')
        finish(server.target, job.job_id)
        out = cli(server.target, "children", job.job_id[:8], "cmds")
        assert out.returncode == 0, out.stderr
        rows = [line.split("\t") for line in out.stdout.splitlines()]  # piped: tab-separated
        assert rows[0][1] == "Failed" and rows[0][3].endswith("exit code 4: bad")  # failed first
        assert len(rows) == 3 and all(len(r) == 5 for r in rows)
        assert "7" in out.stdout and "fine" in out.stdout
        failed = cli(server.target, "children", job.job_id, "cmds", "--status", "failed")
        assert failed.stdout.count("Failed") == 1 and "Completed" not in failed.stdout
        logs = cli(server.target, "logs", job.job_id[:12], "cmds", "--child", "1")
        assert logs.returncode == 0 and "stderr| bad" in logs.stdout and "fine" not in logs.stdout
        docs = cli(server.target, "documents", job.job_id[:8])
        assert "a.txt" in docs.stdout and "size=14" in docs.stdout
        show = cli(server.target, "show", job.job_id[:8])
        assert show.returncode == 0 and "mixed" in show.stdout
    finally:
        server.stop()
    # An ambiguous prefix is one clear line and exit 2.
    conn = sqlite3.connect(tmp_path / "c.db")
    for tail in ("0" * 24, "1" * 24):
        conn.execute("INSERT INTO jobs (job_id, definition_name, description, definition_toml, "
                     "on_step_failure, status, head_seq, created_at) VALUES (?, 'x', '', '', 'stop',"
                     " 3, 0, 0)", (f"abcdef12{tail}",))
    conn.commit()
    conn.close()
    server = Orchestrator(f"sqlite:///{tmp_path / 'c.db'}", workspace=tmp_path)
    try:
        out = cli(server.target, "show", "abcdef12")
        assert out.returncode == 2
        assert "matches more than one job" in out.stderr and "Traceback" not in out.stderr
        assert cli(server.target, "show", "abcdef120").returncode == 0
    finally:
        server.stop()
