"""Every service, RPC, message, field, enum and enum value in the contract has a comment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]
PROTO = "stepwatch/v1/orchestrator.proto"


def documented_paths(tmp_path: Path) -> tuple[descriptor_pb2.FileDescriptorProto, dict[tuple, str]]:
    out = tmp_path / "set.binpb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO / 'protos'}",
                    "--include_source_info", f"--descriptor_set_out={out}", PROTO], check=True)
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (file,) = [f for f in fds.file if f.name == PROTO]
    comments = {tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location}
    return file, comments


def test_every_element_of_the_contract_is_documented(tmp_path: Path) -> None:
    file, comments = documented_paths(tmp_path)
    missing: list[str] = []

    def need(path: tuple, name: str) -> None:
        if not comments.get(path):
            missing.append(name)

    for si, svc in enumerate(file.service):  # 6 = FileDescriptorProto.service
        need((6, si), svc.name)
        for mi, m in enumerate(svc.method):  # 2 = ServiceDescriptorProto.method
            need((6, si, 2, mi), f"{svc.name}.{m.name}")
    for mi, msg in enumerate(file.message_type):  # 4 = message_type, 2 = field
        need((4, mi), msg.name)
        for fi, f in enumerate(msg.field):
            need((4, mi, 2, fi), f"{msg.name}.{f.name}")
    for ei, enum in enumerate(file.enum_type):  # 5 = enum_type, 2 = value
        need((5, ei), enum.name)
        for vi, v in enumerate(enum.value):
            need((5, ei, 2, vi), v.name)
    assert missing == []
    rpcs = [comments[(6, 0, 2, i)] for i in range(len(file.service[0].method))]
    assert all("Errors:" in text for text in rpcs), "each RPC says which errors it returns"
