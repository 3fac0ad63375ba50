"""Confinement: paths stay inside the workspace, commands get a minimal environment and
(with --shell-user) another user. Through a real server, from outside."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.contract.helpers import bad_request_fields, finish
from tests.procs import Orchestrator

DEADLINE = 60


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside the workspace with a secret in it."""
    with tempfile.TemporaryDirectory(prefix="sw-outside-") as d:
        (Path(d) / "secret.txt").write_text("the secret words\n")
        yield Path(d)


@pytest.fixture
def workspace() -> Iterator[Path]:
    """World-readable, so a command run as another user can enter it."""
    with tempfile.TemporaryDirectory(prefix="sw-ws-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


def scan(root: str, include: str = "*") -> str:
    return (f'name = "scan"\n[steps.scan]\ntype = "scan_files"\nroot = "{root}"\n'
            f'include = ["{include}"]\n[steps.sum]\ntype = "summarize"\ndepends = ["scan"]\n')


def refused(stub: pb_grpc.OrchestratorServiceStub, toml: str) -> tuple[list[str], str]:
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml), timeout=DEADLINE)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return bad_request_fields(err.value), err.value.details()


def test_paths_leading_out_of_the_workspace_are_refused_at_submit(
        workspace: Path, outside: Path) -> None:
    (workspace / "docs").mkdir()
    (workspace / "out-link").symlink_to(outside)
    (workspace / "nowhere-link").symlink_to(outside / "does-not-exist")
    orch = Orchestrator(f"sqlite:///{workspace / 'c.db'}", workspace=workspace)
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            for root in (str(outside), "/", "../..", "docs/../..", "~/x"):
                fields, _ = refused(stub, scan(root))
                assert fields == ["steps.scan.root"], (root, fields)
            for include in ("../*", "/etc/*", "docs/../../*"):
                fields, _ = refused(stub, scan(".", include))
                assert fields == ["steps.scan.include"], (include, fields)
            # A symlink out: refused the same way whether its target exists or not.
            _, to_real = refused(stub, scan("out-link"))
            _, to_nothing = refused(stub, scan("nowhere-link"))
            assert to_real == to_nothing
            assert str(outside) not in to_real
            # Inside is fine.
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=scan("docs", "*.md")),
                                 timeout=DEADLINE).job
            assert finish(stub, job.job_id).status == pb.JOB_STATUS_COMPLETED  # it ran
    finally:
        orch.stop()


def test_a_symlink_to_a_file_outside_is_never_read(workspace: Path, outside: Path) -> None:
    (workspace / "notes.txt").write_text("one two three\n")
    (workspace / "leak.txt").symlink_to(outside / "secret.txt")
    orch = Orchestrator(f"sqlite:///{workspace / 'c.db'}", workspace=workspace)
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=scan(".", "*.txt")),
                                 timeout=DEADLINE).job
            final = finish(stub, job.job_id)
            assert final.status == pb.JOB_STATUS_COMPLETED
            docs = stub.ListDocuments(pb.ListDocumentsRequest(job_id=job.job_id),
                                      timeout=DEADLINE).documents
            assert [d.path for d in docs] == ["notes.txt"]
            assert docs[0].attrs["words"] == 3
    finally:
        orch.stop()


def test_commands_get_a_minimal_environment_in_the_workspace(workspace: Path) -> None:
    os.environ["STEPWATCH_TEST_SECRET"] = "do-not-leak"
    try:
        orch = Orchestrator(f"sqlite:///{workspace / 'e.db'}", workspace=workspace)
    finally:
        del os.environ["STEPWATCH_TEST_SECRET"]
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                'name = "env"\n[steps.s]\ntype = "shell"\n'
                'commands = ["env > env.txt; pwd > pwd.txt"]\n')), timeout=DEADLINE).job
            assert finish(stub, job.job_id).status == pb.JOB_STATUS_COMPLETED
        seen = dict(line.split("=", 1) for line in (workspace / "env.txt").read_text().splitlines()
                    if "=" in line)
        assert "STEPWATCH_TEST_SECRET" not in seen
        assert "PATH" in seen and seen["STEPWATCH_JOB"] == job.job_id
        assert set(seen) - {"PWD", "SHLVL", "_", "OLDPWD"} <= {
            "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME",
            "SHELL", "TERM", "STEPWATCH_OWNER", "STEPWATCH_JOB", "STEPWATCH_STEP",
            "STEPWATCH_ATTEMPT"}
        assert (workspace / "pwd.txt").read_text().strip() == str(workspace.resolve())
    finally:
        orch.stop()


def test_shell_user_runs_commands_as_that_user(workspace: Path) -> None:
    assert os.geteuid() == 0, "switching users needs root: the tests run as root here"
    orch = Orchestrator(f"sqlite:///{workspace / 'u.db'}", workspace=workspace,
                        extra=["--shell-user", "nobody"])
    try:
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                'name = "who"\n[steps.s]\ntype = "shell"\ncommands = ["id -un"]\n')),
                timeout=DEADLINE).job
            assert finish(stub, job.job_id).status == pb.JOB_STATUS_COMPLETED
            child = stub.ListChildren(pb.ListChildrenRequest(job_id=job.job_id, step="s"),
                                      timeout=DEADLINE).children[0]
            assert child.result == "nobody"
    finally:
        orch.stop()


def test_a_hard_link_to_an_outside_file_is_refused_and_messages_are_relative(
        workspace: Path, outside: Path) -> None:
    (workspace / "docs").mkdir()
    (workspace / "docs" / "notes.txt").write_text("one two three\n")
    (workspace / "docs" / "bad.txt").write_bytes(b"ok\n\xff\n")
    os.link(outside / "secret.txt", workspace / "docs" / "linked.txt")  # same filesystem (/tmp)
    for extra, linked_ok in (([], False), (["--allow-hardlinks"], True)):
        orch = Orchestrator(f"sqlite:///{workspace / f'h{int(linked_ok)}.db'}", workspace=workspace,
                            extra=extra)
        try:
            with grpc.insecure_channel(orch.target) as ch:
                stub = pb_grpc.OrchestratorServiceStub(ch)
                job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                    'name = "scan"\n[policy]\non_step_failure = "continue"\n'
                    '[steps.scan]\ntype = "scan_files"\nroot = "docs"\ninclude = ["*.txt"]\n'
                    'max_child_failures = 5\n[steps.sum]\ntype = "summarize"\n'
                    'depends = ["scan"]\nmax_child_failures = 5\n')), timeout=DEADLINE).job
                finish(stub, job.job_id)
                children = {c.key: c for step in ("scan", "sum") for c in stub.ListChildren(
                    pb.ListChildrenRequest(job_id=job.job_id, step=step), timeout=DEADLINE,
                    ).children if step == "sum" or c.key == "docs/linked.txt"}
            linked = children["docs/linked.txt"]  # the scan's child when refused, else sum's
            if linked_ok:
                assert linked.status == pb.CHILD_STATUS_COMPLETED and linked.result == ""
            else:
                assert linked.status == pb.CHILD_STATUS_FAILED
                assert "hard links" in linked.error.message
            bad = children["docs/bad.txt"].error.message
            assert "not UTF-8 text: docs/bad.txt (byte 3)" in bad, bad
            for c in children.values():  # no message tells where the workspace is
                assert str(workspace) not in c.error.message, c.error.message
        finally:
            orch.stop()
