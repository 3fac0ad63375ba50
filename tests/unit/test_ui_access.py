"""The UI's access rules as tables: login throttling, where a login may lead, sessions, and
a users file that changes (reloaded; a bad new version keeps the old users)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepwatch.passwords import hash_password
from ui_service.security import safe_next
from ui_service.throttle import Throttle
from ui_service.users import SESSION_IDLE_S, Role, Sessions, UserBook


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_free_tries_then_a_growing_delay_then_a_lockout() -> None:
    clock = Clock()
    t = Throttle(clock, free=3, base_s=1, max_delay_s=8, lockout_after=10, lockout_s=600)
    keys = ("address:1.2.3.4", "user:alice")
    waits = []
    for _ in range(10):
        assert t.wait_s(keys) == 0
        t.failed(keys)
        waits.append(t.wait_s(keys))
        clock.now += waits[-1]
    assert waits == [0, 0, 1, 2, 4, 8, 8, 8, 8, 600]
    assert t.wait_s(["user:alice"]) == 0  # the lockout has passed (the clock moved 600 s)
    t.failed(["user:bob"])
    t.succeeded(["user:bob"])
    assert t.wait_s(["user:bob"]) == 0


def test_throttle_keeps_a_bounded_book() -> None:
    t = Throttle(Clock(), max_keys=100)
    for i in range(1000):
        t.failed([f"address:{i}"])
    assert len(t._records) == 100


@pytest.mark.parametrize(("given_next", "want"), [
    ("/jobs/x?step=a", "/jobs/x?step=a"), ("/", "/"), ("", "/"), ("//evil", "/"),
    ("/\\evil.example", "/"), ("/\t/evil.example", "/"), ("https://evil/", "/"),
    ("javascript:alert(1)", "/"), ("/\n/evil", "/"), ("\\\\evil", "/"), ("/ok\x7f", "/")])
def test_next_is_a_same_site_path(given_next: str, want: str) -> None:
    assert safe_next(given_next) == want


@given(st.text(max_size=60))
def test_next_never_leaves_the_site(text: str) -> None:
    out = safe_next(text)
    assert out.startswith("/") and not out.startswith("//")
    assert not any(c in out for c in "\\\t\r\n")


def test_sessions_are_new_ids_and_end_on_logout_or_when_idle() -> None:
    clock = Clock()
    s = Sessions(clock)
    a, b = s.start("alice"), s.start("alice")
    assert a != b and s.user(a) == "alice" and s.user("planted") is None and s.user(None) is None
    s.end(a)
    assert s.user(a) is None and s.user(b) == "alice"
    clock.now += SESSION_IDLE_S + 1
    assert s.user(b) is None


def test_the_users_file_is_read_again_and_a_bad_version_keeps_the_old(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(f"alice {hash_password('a')} operator\n")
    path.chmod(0o600)
    book = UserBook(path)
    assert book.get("alice").role == Role.OPERATOR
    path.write_text(f"alice {hash_password('a')} viewer\nbob {hash_password('b')} admin\n")
    assert book.get("alice").role == Role.VIEWER and book.get("bob").role == Role.ADMIN
    path.write_text("this is not a users file\n")
    assert book.get("bob").role == Role.ADMIN  # kept
    path.write_text(f"eve {hash_password('e')} admin\n")
    path.chmod(0o666)  # anyone may write it now: refused, the old users stay
    assert book.get("eve") is None and book.get("bob").role == Role.ADMIN
