"""The CLI for people at a terminal and for scripts, against a real server: `watch` keeps up
with a 2,000-step job on a pty; piped output is whole records; every --json round-trips to
the proto; `logs --failed` and `logs --follow` say what failed; no command waits forever."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import REPO, Orchestrator, free_port
from tests.support import finish_at, submit_at, until
from tests.support.terminal import Console

STEPWATCH = str(Path(sys.executable).parent / "stepwatch")
DEADLINE = 120

TWO_FAIL = ('name = "two_fail"\n[policy]\non_step_failure = "continue"\n'
            '[steps.a]\ntype = "shell"\ncommands = ["echo a-out; echo a-err >&2; exit 3", '
            '"echo a-fine", "sleep 1; echo a2-out; exit 5"]\nmax_child_failures = 1\n'
            '[steps.b]\ntype = "shell"\ncommands = ["echo b-out; exit 1"]\n'
            '[steps.c]\ntype = "shell"\ncommands = ["echo c-out"]\n'
            '[steps.scan]\ntype = "scan_files"\ninclude = ["*.txt"]\n')


def cli(target: str, *args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPWATCH_TARGET": target}
    env.pop("COLUMNS", None)  # a pipe has no width: nothing may be cut to one
    return subprocess.run([STEPWATCH, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrator]:
    ws = tmp_path_factory.mktemp("ws")
    (ws / "a.txt").write_text("one two\n")
    proc = Orchestrator(f"sqlite:///{ws / 's.db'}", workspace=ws,
                        extra=["--max-steps", "2000"])
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def two_fail(server: Orchestrator) -> pb.Job:
    job = submit_at(server.target, TWO_FAIL)
    return finish_at(server.target, job.job_id)


def round_trips(text: str, message: Message) -> None:
    """The text is one JSON object of the proto's mapping: parsed and printed again, equal."""
    data = json.loads(text)
    json_format.Parse(text, message)
    assert json_format.MessageToDict(message) == data


def test_every_json_output_parses_to_its_proto_message(server: Orchestrator,
                                                       two_fail: pb.Job) -> None:
    job = two_fail.job_id
    one_shot: list[tuple[list[str], type[Message]]] = [
        (["definitions"], pb.ListJobDefinitionsResponse),
        (["jobs"], pb.ListJobsResponse),
        (["show", job[:8]], pb.Job),
        (["children", job, "a"], pb.ListChildrenResponse),
        (["documents", job], pb.ListDocumentsResponse),
        (["rerun", job], pb.Job),
        (["submit", "--file", str(REPO / "jobs" / "release_checks.toml")], pb.Job),
    ]
    for args, kind in one_shot:
        out = cli(server.target, *args, "--json")
        assert out.returncode == 0, (args, out.stderr)
        round_trips(out.stdout, kind())
    slow = REPO / "tests" / "e2e" / "slow.toml"
    submitted = json.loads(cli(server.target, "submit", "--file", str(slow), "--json").stdout)
    cancelled = cli(server.target, "cancel", submitted["jobId"], "--json")
    round_trips(cancelled.stdout, pb.Job())

    # Streams: one object per line.
    watched = cli(server.target, "watch", job, "--json")
    assert watched.returncode == 3, watched.stderr  # completed with failures
    lines = watched.stdout.splitlines()
    assert lines and watched.stdout.endswith("\n")
    for line in lines:
        round_trips(line, pb.WatchJobResponse())
    logs = cli(server.target, "logs", job, "a", "--json")
    assert logs.returncode == 0 and logs.stdout.splitlines(), logs.stderr
    for line in logs.stdout.splitlines():
        round_trips(line, pb.WatchLogsResponse())


def test_logs_failed_prints_exactly_the_failed_steps_logs(server: Orchestrator,
                                                           two_fail: pb.Job) -> None:
    out = cli(server.target, "logs", two_fail.job_id, "--failed")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    headers = [ln for ln in lines if ln.startswith("== ")]
    assert [h.split()[1] for h in headers] == ["a", "b"]  # both failed steps, nothing else
    assert "[0] a-out" in lines and "[0] stderr| a-err" in lines and "[0] b-out" in lines
    assert "[2] a2-out" in lines
    a = next(s for s in two_fail.steps if s.name == "a")
    # a-fine (completed, or cancelled when the second failure stopped the step) is left out.
    assert a.children.failed == 2 and a.children.completed + a.children.cancelled == 1
    # a's child that completed, and c (completed), are not there.
    assert not any("a-fine" in ln or "c-out" in ln for ln in lines), out.stdout
    assert out.stdout.endswith("\n")


def test_logs_follow_of_a_failing_step_exits_1_after_saying_failed(server: Orchestrator,
                                                                  tmp_path: Path) -> None:
    flag = tmp_path / "go"
    job = submit_at(server.target, 'name = "f"\n[steps.s]\ntype = "shell"\ncommands = ["echo '
                    f'before; while [ ! -f {flag} ]; do sleep 0.05; done; echo after; exit 2"]\n')
    follower = subprocess.Popen([STEPWATCH, "--target", server.target, "logs", job.job_id, "s",
                                 "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=REPO)
    flag.touch()
    stdout, stderr = follower.communicate(timeout=DEADLINE)
    assert follower.returncode == 1, (stdout, stderr)
    lines = stdout.splitlines()
    assert lines[:2] == ["[0] before", "[0] after"]
    assert lines[-1].startswith("s attempt 1: Failed (Child failures exceeded"), stdout


def test_piped_output_is_whole_records_with_a_final_newline(server: Orchestrator) -> None:
    long_cmd = "echo " + "x" * 150 + "; nonexistent_cmd_xyz"
    names = [f"step_with_a_rather_long_name_{i:03d}" for i in range(40)]
    toml = 'name = "wide"\n[policy]\non_step_failure = "continue"\n' + "".join(
        f'[steps.{n}]\ntype = "shell"\ncommands = ["{long_cmd if i % 10 == 0 else "true"}"]\n'
        for i, n in enumerate(names))
    job = finish_at(server.target, submit_at(server.target, toml).job_id)
    for args in (["watch", job.job_id], ["show", job.job_id]):
        out = cli(server.target, *args)
        assert out.stdout.endswith("\n") and "…" not in out.stdout and "..." not in out.stdout
        steps = [ln.split("\t") for ln in out.stdout.splitlines() if ln.startswith("step\t")]
        assert [s[2] for s in steps] == names
        failed = [s for s in steps if s[4] == "Failed"]
        assert len(failed) == 4 and all("nonexistent_cmd_xyz" in s[-1] for s in failed)
        assert all(s[4] == "Completed" for s in steps if s not in failed)
    jobs = cli(server.target, "jobs", "--limit", "50").stdout.splitlines()
    assert any(ln.split("\t")[:3] == [job.job_id, "wide", "Completed with failures"]
               for ln in jobs)


def test_lists_say_what_they_left_out(server: Orchestrator) -> None:
    cmds = ", ".join(f'"echo {i}"' for i in range(165))
    job = finish_at(server.target, submit_at(
        server.target, f'name = "many"\n[steps.m]\ntype = "shell"\ncommands = [{cmds}]\n').job_id)
    out = cli(server.target, "children", job.job_id, "m")
    assert len(out.stdout.splitlines()) == 100
    assert "showing 100 of 165 children" in out.stderr and "--all" in out.stderr
    every = cli(server.target, "children", job.job_id, "m", "--all")
    assert len(every.stdout.splitlines()) == 165 and "showing" not in every.stderr
    few = cli(server.target, "children", job.job_id, "m", "--limit", "7")
    assert len(few.stdout.splitlines()) == 7 and "showing 7 of 165" in few.stderr
    missing = cli(server.target, "logs", job.job_id, "m", "--child", "999")
    assert missing.returncode == 2 and "no child 999" in missing.stderr


def test_submit_prints_the_id_and_watch_finds_a_job_without_one(server: Orchestrator) -> None:
    out = cli(server.target, "submit", "--file", str(REPO / "jobs" / "release_checks.toml"))
    job_id = out.stdout.strip()
    assert out.returncode == 0 and len(job_id) == 32 and out.stdout == job_id + "\n"
    latest = cli(server.target, "watch", "--latest", "--json")
    assert json.loads(latest.stdout.splitlines()[0])["snapshot"]["job"]["jobId"] == job_id
    assert latest.returncode in (0, 1, 3, 4)
    none = cli(server.target, "watch")
    assert none.returncode == 2 and "--latest" in none.stderr


def test_watch_of_an_orchestrator_never_reached_fails_after_a_bounded_wait() -> None:
    target = f"127.0.0.1:{free_port()}"
    begun = time.monotonic()
    out = cli(target, "watch", "f" * 32, timeout=60)
    assert out.returncode == 2 and f"cannot reach the orchestrator at {target}" in out.stderr
    assert time.monotonic() - begun < 30
    follow = cli(target, "logs", "f" * 32, "s", "--follow", timeout=60)
    assert follow.returncode == 2 and "cannot reach" in follow.stderr


@pytest.mark.serial  # timed: the CLI exits within 1 s of the job's end: run alone
def test_watch_on_a_terminal_exits_within_1_s_of_a_2000_step_job_ending(
        server: Orchestrator) -> None:
    toml = 'name = "flat"\n' + "".join(f'[steps.s{i}]\ntype = "shell"\ncommands = ["true"]\n'
                                       for i in range(2000))
    job = submit_at(server.target, toml)
    # A 120x40 terminal; no COLUMNS or LINES: the CLI reads the size from the pty.
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    console = Console().start([STEPWATCH, "--target", server.target, "watch", job.job_id],
                              env={**env, "TERM": "xterm-256color"}, size=(40, 120))
    try:
        code = console.wait(600)
        exited = dt.datetime.now(dt.UTC)
    finally:
        console.kill()
    ended = finish_at(server.target, job.job_id)
    assert code == 0, console.read_text()[-2000:]
    lag = (exited - ended.finished_at.ToDatetime(dt.UTC)).total_seconds()
    assert lag < 1.0, f"the CLI exited {lag:.2f} s after the job's finished_at"
    assert "Completed" in console.read_text()


def test_submit_with_inputs_and_show_them(server: Orchestrator, tmp_path: Path) -> None:
    definition = tmp_path / "in.toml"
    definition.write_text('name = "in"\n[inputs.who]\nrequired = true\n[inputs.n]\ntype = "int"\n'
                          'default = 1\n[steps.s]\ntype = "shell"\n'
                          'commands = ["echo \\"$STEPWATCH_INPUT_WHO x$STEPWATCH_INPUT_N\\""]\n')
    missing = cli(server.target, "submit", "--file", str(definition), "--input", "n=two")
    assert missing.returncode == 2
    assert f"{definition}: inputs.who: is required" in missing.stderr
    assert f"{definition}: inputs.n: must be a whole number" in missing.stderr
    out = cli(server.target, "submit", "--file", str(definition), "-i", "who=a b; $(id)",
              "--input", "n=4", "--watch")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.splitlines()[0]
    shown = cli(server.target, "show", job_id).stdout.splitlines()
    assert ["input", "n", "4"] in [ln.split("\t") for ln in shown]
    assert ["input", "who", "a b; $(id)"] in [ln.split("\t") for ln in shown]
    logs = cli(server.target, "logs", job_id, "s").stdout
    assert "[0] a b; $(id) x4" in logs


def test_watch_without_an_id_on_a_terminal_offers_the_running_jobs(server: Orchestrator) -> None:
    slow = 'name = "slow_{}"\n[steps.w]\ntype = "shell"\ncommands = ["sleep 60"]\n'
    jobs = [submit_at(server.target, slow.format(i)) for i in range(2)]
    console = Console().start([STEPWATCH, "--target", server.target, "watch"])
    try:
        until(lambda: "Watch which job?" in console.read_text(), "the prompt", DEADLINE)
        listed = console.read_text()
        assert all(j.job_id[:8] in listed for j in jobs), listed
        row = next(line for line in listed.splitlines() if "slow_0" in line)
        number = re.search(r"\d+", row).group()  # type: ignore[union-attr]  # the # column
        console.type(number.encode() + b"\r")
        until(lambda: "slow_0" in console.read_text()[len(listed):], "its live view", DEADLINE)
        with grpc.insecure_channel(server.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            for j in jobs:
                stub.CancelJob(pb.CancelJobRequest(job_id=j.job_id), timeout=DEADLINE)
        assert console.wait(DEADLINE) == 4  # cancelled
    finally:
        console.kill()
