"""`stepwatch watch` in a real 24-row terminal (tmux): the failed step stays on screen."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.procs import REPO, Orchestrator

STEPWATCH = str(Path(sys.executable).parent / "stepwatch")
DEADLINE = 60


def test_watch_in_24_rows_keeps_the_failed_step_visible(tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed: `make test` installs it"
    steps = "".join(f'[steps.s{i:02d}]\ntype = "shell"\ncommands = ["{"exit 1" if i == 27 else "true"}"]\n'
                    for i in range(30))
    (tmp_path / "long.toml").write_text(f'name = "long"\n[policy]\non_step_failure = "continue"\n{steps}')
    server = Orchestrator(f"sqlite:///{tmp_path / 't.db'}", workspace=tmp_path)
    session = f"sw-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "24",
                        f"cd {REPO} && {STEPWATCH} --target {server.target} submit --file "
                        f"{tmp_path / 'long.toml'} --watch; echo EXIT=$?; sleep 60"], check=True)
        screen = ""
        end = time.monotonic() + DEADLINE
        while "EXIT=" not in screen and time.monotonic() < end:
            time.sleep(0.2)  # polling the terminal, with a deadline
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
        server.stop()
    assert "EXIT=3" in screen, screen  # completed with failures
    rows = screen.splitlines()
    assert len(rows) <= 24
    failed = [r for r in rows if " s27 " in r]
    assert failed and "Failed" in failed[0], screen
    assert "more steps" in screen and "completed" in screen  # the summary of what is hidden
