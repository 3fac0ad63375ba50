"""Every CLI error path: one clear line on stderr, exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import REPO, Orchestrator, free_port

STEPWATCH = str(Path(sys.executable).parent / "stepwatch")


def cli(target: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPWATCH_TARGET": target, "COLUMNS": "80", "NO_COLOR": "1"}
    return subprocess.run([STEPWATCH, *args], capture_output=True, text=True, env=env,
                          timeout=60, cwd=cwd)


def one_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    first = out.stderr.splitlines()[0]
    for needle in needles:
        assert needle in first, out.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrator]:
    jobs = tmp_path_factory.mktemp("jobs")
    (jobs / "good.toml").write_text('name = "good"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n')
    (jobs / "broken.toml").write_text('name = "broken"\n[steps.a]\ntype = "nope"\n')
    (jobs / "garbled.toml").write_text("this is = = not toml")
    proc = Orchestrator(f"sqlite:///{tmp_path_factory.mktemp('db') / 'e.db'}", jobs_dir=jobs)
    yield proc
    proc.stop()


def test_usage_errors(server: Orchestrator, tmp_path: Path) -> None:
    one_error(cli(server.target, "submit", "--file", str(tmp_path / "nope.toml")),
              "cannot read", "nope.toml", "No such file")
    one_error(cli(server.target, "submit"), "give a definition NAME", "--file")
    one_error(cli(server.target, "submit", "good", "--file", "x.toml"), "not both")
    one_error(cli(server.target, "jobs", "--status", "sideways"), "unknown status 'sideways'")
    one_error(cli(server.target, "show", "f" * 32), "NOT_FOUND")
    one_error(cli(server.target, "children", "f" * 32, "s", "--status", "odd"),
              "unknown child status")


def test_a_wrong_target_says_it_cannot_reach_the_orchestrator() -> None:
    target = f"127.0.0.1:{free_port()}"
    for args in (["jobs"], ["show", "f" * 32], ["definitions"], ["submit", "good"]):
        one_error(cli(target, *args), f"cannot reach the orchestrator at {target}")


def test_an_unparsable_catalog_file_is_listed_with_its_error(server: Orchestrator) -> None:
    listed = cli(server.target, "definitions", "--json")
    assert listed.returncode == 0, listed.stderr
    by_name = {d["name"]: d for d in json.loads(listed.stdout)["definitions"]}
    assert "error" not in by_name["good"]
    assert "steps.a.type" in by_name["broken"]["error"]
    assert "TOML syntax error" in by_name["garbled"]["error"]
    out = cli(server.target, "submit", "broken")
    one_error(out, "INVALID_ARGUMENT", "invalid definition file broken.toml")
    assert "steps.a.type" in out.stderr  # and every violation under it
    table = cli(server.target, "definitions")
    assert "invalid definition file" in table.stdout


def test_json_output(server: Orchestrator) -> None:
    submitted = cli(server.target, "submit", "good", "--watch")
    assert submitted.returncode == 0, submitted.stderr
    jobs = json.loads(cli(server.target, "jobs", "--json").stdout)["jobs"]
    assert jobs[0]["definitionName"] == "good" and jobs[0]["status"] == "JOB_STATUS_COMPLETED"
    shown = json.loads(cli(server.target, "show", jobs[0]["jobId"][:8], "--json").stdout)
    assert shown["jobId"] == jobs[0]["jobId"] and shown["steps"][0]["name"] == "a"


def test_a_job_id_prefix_too_short_to_resolve_is_refused_as_such(server: Orchestrator) -> None:
    for args in (["show", "4d71"], ["watch", "4d71"], ["cancel", "abc"], ["logs", "4d71", "s"],
                 ["children", "4d71", "s"], ["documents", "4d71"], ["rerun", "4d71"]):
        one_error(cli(server.target, *args), "too short", "8 or more characters")
    # Eight characters are a prefix the server resolves (here: to no job).
    one_error(cli(server.target, "show", "4d71ab12"), "NOT_FOUND")
