"""The example definitions in jobs/ run as their descriptions say and leave nothing behind
in the tree they run in (no __pycache__, no build files)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from stepwatch.v1 import orchestrator_pb2 as pb
from tests.procs import REPO, Orchestrator, run_job


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts}


def test_release_checks_passes_on_a_copy_of_this_tree_and_writes_no_file(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("orchestrator_service", "stepwatch", "ui_service", "protos"):
        shutil.copytree(REPO / name, tree / name, ignore=skip)
    subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
    subprocess.run(["git", "add", "."], cwd=tree, check=True)
    before = _files(tree)
    server = Orchestrator(f"sqlite:///{tmp_path / 'e.db'}", workspace=tree)
    try:
        job = run_job(server.target, 180, definition_name="release_checks")
    finally:
        server.stop()
    assert job.status == pb.JOB_STATUS_COMPLETED, job
    assert [s.status for s in job.steps] == [pb.STEP_STATUS_COMPLETED] * len(job.steps)
    assert _files(tree) == before
