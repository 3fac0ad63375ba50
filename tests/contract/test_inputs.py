"""Typed inputs through the contract: declared in a definition, given to SubmitJob and
RerunJob as JSON values, checked all at once, recorded on the job, and seen by commands as
environment variables, never as command text."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2, status_pb2

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

DEADLINE = 60
HOSTILE = "$(id); echo pwned `id` && rm -rf / ; 'quoted' \"dq\" \\n"

DEFINITION = '''
name = "with_inputs"
[inputs.target]
type = "string"
required = true
description = "what to print"
[inputs.count]
type = "int"
default = 3
[inputs.ratio]
type = "float"
default = 0.5
[inputs.dry_run]
type = "bool"
default = false
[inputs.env]
type = "enum"
choices = ["dev", "prod"]
default = "dev"
[steps.show]
type = "shell"
''' + 'commands = ["printf \'%s|%s|%s|%s|%s\' ' + " ".join(
    f'\\"$STEPWATCH_INPUT_{n}\\"' for n in ("TARGET", "COUNT", "RATIO", "DRY_RUN", "ENV")) + '"]\n'


def values(**kw: object) -> dict[str, struct_pb2.Value]:
    out = {}
    for k, v in kw.items():
        out[k] = json_format.ParseDict(v, struct_pb2.Value())
    return out


def violations(err: grpc.RpcError) -> dict[str, str]:
    for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                br = error_details_pb2.BadRequest()
                if detail.Unpack(br):
                    return {v.field: v.description for v in br.field_violations}
    return {}


def run(stub: pb_grpc.OrchestratorServiceStub, job: pb.Job) -> tuple[pb.Job, str]:
    for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE):
        pass
    done = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job
    text = "".join(r.chunk.text for r in stub.WatchLogs(
        pb.WatchLogsRequest(job_id=job.job_id, step="show"), timeout=DEADLINE)
        if r.WhichOneof("kind") == "chunk")
    return done, text


def as_python(job: pb.Job) -> dict[str, object]:
    return {k: json_format.MessageToDict(v) for k, v in job.inputs.items()}


def test_inputs_of_every_type_reach_the_command_as_variables_verbatim(
        stub: pb_grpc.OrchestratorServiceStub) -> None:
    job = stub.SubmitJob(pb.SubmitJobRequest(
        definition_toml=DEFINITION,
        inputs=values(target=HOSTILE, count="7", ratio=2.25, dry_run=True)), timeout=DEADLINE).job
    want = {"target": HOSTILE, "count": 7, "ratio": 2.25, "dry_run": True, "env": "dev"}
    assert as_python(job) == want  # typed ("7" read as the int it declares), default filled
    done, text = run(stub, job)
    assert done.status == pb.JOB_STATUS_COMPLETED, done
    assert text.rstrip("\n") == f"{HOSTILE}|7|2.25|true|dev"  # printed, never executed
    assert "uid=" not in text
    assert as_python(stub.GetJob(pb.GetJobRequest(job_id=job.job_id)).job) == want
    # The job header in the event log carries them too.
    first = next(iter(stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE)))
    assert as_python(first.snapshot.job) == want

    # A rerun keeps them; a value given replaces that one only.
    again = stub.RerunJob(pb.RerunJobRequest(job_id=job.job_id, inputs=values(env="prod")),
                          timeout=DEADLINE).job
    assert as_python(again) == {**want, "env": "prod"}
    done, text = run(stub, again)
    assert text.rstrip("\n") == f"{HOSTILE}|7|2.25|true|prod"


def test_every_bad_input_is_named_in_one_invalid_argument(
        stub: pb_grpc.OrchestratorServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.SubmitJob(pb.SubmitJobRequest(
            definition_toml=DEFINITION,
            inputs=values(count="three", ratio=[1], env="staging", nope=1)), timeout=DEADLINE)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(err)
    assert set(found) == {"inputs.target", "inputs.count", "inputs.ratio", "inputs.env",
                          "inputs.nope"}, found
    assert "required" in found["inputs.target"]
    assert "whole number" in found["inputs.count"] and "'three'" in found["inputs.count"]
    assert "dev, prod" in found["inputs.env"]
    assert "not an input" in found["inputs.nope"]
    assert err.details().startswith("invalid inputs:")  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as info:
        stub.SubmitJob(pb.SubmitJobRequest(definition_toml=DEFINITION,
                                           inputs=values(target="x", count=1.5)), timeout=DEADLINE)
    assert set(violations(info.value)) == {"inputs.count"}


def test_a_bad_declaration_is_a_definition_error(stub: pb_grpc.OrchestratorServiceStub) -> None:
    bad = ('name = "x"\n[inputs.n]\ntype = "int"\ndefault = "many"\n[inputs.e]\ntype = "enum"\n'
           '[inputs.w]\ntype = "wide"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n')
    with pytest.raises(grpc.RpcError) as info:
        stub.SubmitJob(pb.SubmitJobRequest(definition_toml=bad), timeout=DEADLINE)
    assert set(violations(info.value)) == {"inputs.n.default", "inputs.e.choices",
                                           "inputs.w.type"}
