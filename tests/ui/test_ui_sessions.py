"""The UI's sessions and identity, from outside over HTTP (a real UI process): the user header
only from a trusted proxy, a session that ends when its user leaves the users file, a new
session id at login, ``next`` only on this site, throttled logins, hashes upgraded at login."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepwatch.passwords import hash_password, needs_rehash
from tests.chromium import UI
from tests.procs import REPO

DEADLINE = 60
OLD_SCRYPT = ("scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA$"  # 'old-pw' hashed as earlier versions did
              "{digest}")


class Http:
    """One client: its own source address and cookie jar."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.port, self.source = port, source
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE,
                                          source_address=(self.source, 0))
        sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        for k, v in resp.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, text

    def login(self, user: str, password: str, next_path: str = "/") -> tuple[int, str]:
        status, headers, text = self.request("POST", "/login", {"user": user, "password": password,
                                                                "next": next_path})
        return status, headers.get("location", text)


def users_file(tmp_path: Path, lines: str) -> Path:
    path = tmp_path / "users"
    path.write_text(lines)
    path.chmod(0o600)
    return path


@pytest.fixture
def ui_with_users(tmp_path: Path) -> Iterator[tuple[UI, Path]]:
    path = users_file(tmp_path, f"alice {hash_password('alice-pw')} operator\n"
                                f"bob {hash_password('bob-pw')} viewer\n")
    ui = UI("127.0.0.1:1", "--ui-auth-file", str(path))
    try:
        yield ui, path
    finally:
        ui.stop()


def test_a_user_removed_from_the_file_is_logged_out_at_their_next_request(
        ui_with_users: tuple[UI, Path]) -> None:
    ui, path = ui_with_users
    alice = Http(ui.port)
    assert alice.login("alice", "alice-pw") == (303, "/")
    assert alice.request("GET", "/")[0] == 200
    path.write_text(f"bob {hash_password('bob-pw')} viewer\n")  # alice removed
    status, headers, _ = alice.request("GET", "/")
    assert status in (302, 307) and headers["location"].startswith("/login")


def test_login_starts_a_new_session_and_logout_ends_it(ui_with_users: tuple[UI, Path]) -> None:
    ui, _ = ui_with_users
    victim = Http(ui.port)
    victim.request("GET", "/login")
    planted = dict(victim.cookies)  # what an attacker could have set before the login
    assert victim.login("alice", "alice-pw")[0] == 303
    assert victim.cookies != planted
    attacker = Http(ui.port)
    attacker.cookies = planted
    assert attacker.request("GET", "/")[0] in (302, 307)  # the planted cookie is nobody
    stolen = dict(victim.cookies)
    assert victim.request("GET", "/logout")[0] == 303
    thief = Http(ui.port)
    thief.cookies = stolen
    assert thief.request("GET", "/")[0] in (302, 307)  # the session ended on the server


@pytest.mark.parametrize("next_path", [
    "/%5Cevil.example/x", "/\\evil.example/x", "/\t/evil.example/x", "//evil.example/x",
    "https://evil.example/", "/%09/evil.example/x", "javascript:alert(1)", "/\\/evil.example"])
def test_next_is_only_a_path_on_this_site(ui_with_users: tuple[UI, Path], next_path: str) -> None:
    ui, _ = ui_with_users
    c = Http(ui.port)
    status, location = c.login("alice", "alice-pw", urllib.parse.unquote(next_path))
    assert status == 303 and location == "/", location
    assert Http(ui.port).login("alice", "alice-pw", "/jobs/abc?step=x") == (303, "/jobs/abc?step=x")


@pytest.mark.serial  # timed: 100 refusals well under 100 hashes, the page under 1 s: run alone
def test_a_burst_of_wrong_passwords_is_throttled_without_hashing_each(
        ui_with_users: tuple[UI, Path]) -> None:
    ui, _ = ui_with_users
    c = Http(ui.port)
    started = time.monotonic()
    answers = [c.login("alice", f"wrong-{i}")[0] for i in range(100)]
    took = time.monotonic() - started
    assert answers[:5] == [401] * 5 and answers.count(429) >= 90, answers
    # 90+ refusals ran no hash: far below 100 argon2 checks (~0.3 s each here).
    assert took < 100 * 0.3 / 2, took
    # The right password is refused too while the user is throttled...
    assert c.login("alice", "alice-pw")[0] == 429
    # ...but another user from another address still logs in at once.
    assert Http(ui.port, "127.0.0.3").login("bob", "bob-pw")[0] == 303
    # The page stays quick for others during and after the burst.
    t0 = time.monotonic()
    assert Http(ui.port, "127.0.0.4").request("GET", "/login")[0] == 200
    assert time.monotonic() - t0 < 1.0


def test_an_old_hash_is_upgraded_at_the_next_login(tmp_path: Path) -> None:
    import base64
    import hashlib

    digest = base64.urlsafe_b64encode(hashlib.scrypt(
        b"old-pw", salt=b"saltsaltsaltsalt", n=16384, r=8, p=1, dklen=32)).decode().rstrip("=")
    old = OLD_SCRYPT.format(digest=digest)
    path = users_file(tmp_path, f"carol {old} admin\n")
    ui = UI("127.0.0.1:1", "--ui-auth-file", str(path))
    try:
        assert Http(ui.port).login("carol", "old-pw")[0] == 303
        name, stored, role = path.read_text().split()
        assert (name, role) == ("carol", "admin") and stored.startswith("$argon2id$")
        assert not needs_rehash(stored) and oct(path.stat().st_mode & 0o777) == "0o600"
        assert Http(ui.port).login("carol", "old-pw")[0] == 303  # the new hash works
    finally:
        ui.stop()


def start_ui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ui_service", "--port", "0", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=DEADLINE,
                          env={**os.environ, "PYTEST_CURRENT_TEST": ""})


def test_the_proxy_header_needs_a_trusted_proxy_to_start() -> None:
    done = start_ui("--host", "0.0.0.0", "--trust-proxy-user-header", "X-Forwarded-User")
    assert done.returncode == 2 and "--trusted-proxy" in done.stderr, done.stderr


def test_the_proxy_header_is_believed_only_from_the_trusted_proxy(tmp_path: Path) -> None:
    path = users_file(tmp_path, f"root-admin {hash_password('x')} admin\n")
    ui = UI("127.0.0.1:1", "--ui-auth-file", str(path), "--trust-proxy-user-header",
            "X-Forwarded-User", "--trusted-proxy", "127.0.0.1/32")
    try:
        claim = {"X-Forwarded-User": "root-admin"}
        # A direct client on another address: the header is dropped, nobody is logged in.
        direct = Http(ui.port, "127.0.0.2")
        assert direct.request("GET", "/", headers=claim)[0] == 401
        # The proxy (127.0.0.1) names the user: the page is served.
        assert Http(ui.port, "127.0.0.1").request("GET", "/", headers=claim)[0] == 200
    finally:
        ui.stop()


def test_a_users_file_writable_by_others_is_refused(tmp_path: Path) -> None:
    path = users_file(tmp_path, f"alice {hash_password('a')} admin\n")
    path.chmod(0o666)
    done = start_ui("--ui-auth-file", str(path))
    assert done.returncode == 2 and "writable by others" in done.stderr, done.stderr
