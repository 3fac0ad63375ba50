"""Tokens and UI passwords: made by the CLI, checked by the servers. Tables, no I/O."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from stepwatch.cli import app
from stepwatch.passwords import hash_password, verify_password
from stepwatch.tokens import digest, new_token


def test_token_create_prints_the_token_once_and_a_line_with_its_hash() -> None:
    out = CliRunner().invoke(app, ["token", "create", "--role", "operator", "--name", "ci"])
    assert out.exit_code == 0, out.output
    token = out.output.split("shown once): ", 1)[1].split()[0]
    line = out.output.strip().splitlines()[-1]
    assert line == f"operator {hashlib.sha256(token.encode()).hexdigest()} ci"
    assert token not in line


def test_a_bad_role_is_one_line_and_exit_2() -> None:
    out = CliRunner().invoke(app, ["token", "create", "--role", "root", "--name", "x"])
    assert out.exit_code == 2 and "role must be one of" in out.output


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_new_tokens_differ_and_hash_as_the_server_checks(role: str) -> None:
    (a, line_a), (b, _) = new_token(role, "n"), new_token(role, "n")
    assert a != b and line_a.split()[1] == digest(a) and line_a.split()[0] == role


def test_ui_user_line_verifies_only_its_password() -> None:
    out = CliRunner().invoke(app, ["ui-user", "--name", "alice", "--role", "operator",
                                   "--password", "s3cret"])
    assert out.exit_code == 0, out.output
    name, stored, role = out.output.strip().splitlines()[-1].split()
    assert (name, role) == ("alice", "operator")
    assert verify_password("s3cret", stored) and not verify_password("s3cre", stored)
    assert not verify_password("s3cret", "garbage") and hash_password("x") != hash_password("x")
