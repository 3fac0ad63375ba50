"""`stepwatch schedules ...` and `stepwatch webhooks ...` against a real server: create,
list (piped records and --json that parses as the contract), pause/resume, trigger and
watch, delete; a webhook's secret printed once and its deliveries listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format

from stepwatch.v1 import orchestrator_pb2 as pb
from tests.procs import REPO, Orchestrator
from tests.support.receiver import Receiver, receiver

STEPWATCH = str(Path(sys.executable).parent / "stepwatch")


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrator]:
    proc = Orchestrator(f"sqlite:///{tmp_path_factory.mktemp('cli') / 'cli.db'}",
                        extra=["--webhook-allow-host", "127.0.0.1"])
    yield proc
    proc.stop()


def cli(server: Orchestrator, *args: str) -> subprocess.CompletedProcess[str]:
    """Piped (not a terminal): records, no colour."""
    env = {**os.environ, "STEPWATCH_TARGET": server.target}
    env.pop("COLUMNS", None)
    return subprocess.run([STEPWATCH, *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=REPO)


def test_schedules_through_the_cli(server: Orchestrator) -> None:
    made = cli(server, "schedules", "create", "greet", "--cron", "0 9 * * 1-5",
               "--tz", "Europe/Berlin", "--input", "who=team", "--overlap", "cancel_previous",
               "--json")
    assert made.returncode == 0, made.stderr
    s = json_format.Parse(made.stdout, pb.Schedule())
    assert (s.definition_name, s.cron, s.time_zone) == ("greet", "0 9 * * 1-5", "Europe/Berlin")
    assert s.overlap == pb.OVERLAP_POLICY_CANCEL_PREVIOUS and s.inputs["who"].string_value == "team"

    listed = cli(server, "schedules", "list")
    [row] = [r.split("\t") for r in listed.stdout.splitlines() if r.startswith(s.schedule_id)]
    assert row[1:3] == ["greet", "0 9 * * 1-5 (Europe/Berlin)"]
    assert row[3] == s.next_run_time.ToJsonString() and row[4] == "-"
    assert listed.stdout.endswith("\n")
    as_json = json_format.Parse(cli(server, "schedules", "list", "--json").stdout,
                                pb.ListSchedulesResponse())
    assert s.schedule_id in [x.schedule_id for x in as_json.schedules]

    paused = cli(server, "schedules", "pause", s.schedule_id)
    assert paused.returncode == 0 and paused.stdout.split("\t")[3] == "paused"
    resumed = cli(server, "schedules", "resume", s.schedule_id, "--json")
    assert not json.loads(resumed.stdout).get("paused", False)

    trig = cli(server, "schedules", "trigger", s.schedule_id, "--watch", "--json")
    assert trig.returncode == 0, trig.stderr
    lines = [json_format.Parse(line, pb.WatchJobResponse()) for line in trig.stdout.splitlines()]
    job_id = lines[0].snapshot.job.job_id
    assert lines[0].snapshot.job.schedule_id == s.schedule_id
    shown = cli(server, "show", job_id)
    records = [r.split("\t") for r in shown.stdout.splitlines()]
    assert ["input", "who", "team"] in records
    assert ["schedule", s.schedule_id] == records[[r[0] for r in records].index("schedule")][:2]
    row = next(r.split("\t") for r in cli(server, "schedules", "list").stdout.splitlines()
               if r.startswith(s.schedule_id))
    assert row[4] == f"{job_id} Completed"

    bad = cli(server, "schedules", "create", "greet", "--cron", "99 * * * *", "--tz", "Nowhere/X")
    assert bad.returncode == 2
    assert "cron:" in bad.stderr and "time_zone:" in bad.stderr and "(2 errors)" in bad.stderr
    assert cli(server, "schedules", "delete", s.schedule_id).returncode == 0
    gone = cli(server, "schedules", "show", s.schedule_id)
    assert gone.returncode == 2 and "NOT_FOUND" in gone.stderr


def test_webhooks_through_the_cli(server: Orchestrator, hooks: Receiver) -> None:
    made = cli(server, "webhooks", "create", hooks.url("/cli"), "--event", "job-finished",
               "--status", "completed", "--definition", "greet")
    assert made.returncode == 0, made.stderr
    sub_id, secret = made.stdout.rstrip("\n").split("\t")
    assert len(sub_id) == 32 and len(secret) == 64
    listed = cli(server, "webhooks", "list").stdout
    assert f"{sub_id}\t{hooks.url('/cli')}\tjob-finished\tCompleted\tgreet" in listed
    assert secret not in listed and secret not in cli(server, "webhooks", "list", "--json").stdout
    job_id = cli(server, "submit", "greet", "--watch", "--json").stdout.splitlines()
    first = json_format.Parse(job_id[0], pb.WatchJobResponse()).snapshot.job.job_id
    got = hooks.wait_for(lambda rs: any(r.path == "/cli" for r in rs))
    assert got[-1].signed_by(secret) and got[-1].payload.job.job_id == first
    log = json_format.Parse(cli(server, "webhooks", "deliveries", "--job", first, "--json").stdout,
                            pb.ListDeliveriesResponse())
    assert [d.subscription_id for d in log.deliveries] == [sub_id]
    bad = cli(server, "webhooks", "create", "ftp://user:pw@example.com/")
    assert bad.returncode == 2 and "url:" in bad.stderr
    assert cli(server, "webhooks", "delete", sub_id).returncode == 0
