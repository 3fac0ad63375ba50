"""The domain enums, the generated bindings and the proto file agree; the bindings are fresh."""

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator_service import statuses
from stepwatch.v1 import orchestrator_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("domain", "proto", "prefix"), [
    (statuses.StepStatus, pb.StepStatus, "STEP_STATUS_"),
    (statuses.JobStatus, pb.JobStatus, "JOB_STATUS_"),
    (statuses.FailureReason, pb.FailureReason, "FAILURE_REASON_"),
])
def test_domain_enums_match_the_proto(domain, proto, prefix) -> None:
    from_proto = {v.name.removeprefix(prefix): v.number for v in proto.DESCRIPTOR.values
                  if v.number != 0}
    assert from_proto == {m.name: m.value for m in domain}


def test_generated_bindings_are_fresh(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO / 'protos'}",
                    f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", "stepwatch/v1/orchestrator.proto"],
                   check=True, cwd=REPO)
    for name in ("orchestrator_pb2.py", "orchestrator_pb2.pyi", "orchestrator_pb2_grpc.py"):
        fresh = (tmp_path / "stepwatch" / "v1" / name).read_text()
        committed = (REPO / "stepwatch" / "v1" / name).read_text()
        assert fresh == committed, f"stepwatch/v1/{name} is stale: run `make proto`"
