"""The UI's users: the --ui-auth-file (``user password-hash role`` lines, `stepwatch ui-user`
makes one), read again whenever it changes, so a user removed or re-roled there is logged
out or re-roled at their next request or page event. Sessions live here, on the server: the
cookie holds only a random id, replaced at login and at logout (no fixation, and a logout
ends the session for whoever else holds the old cookie)."""

from __future__ import annotations

import enum
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stepwatch.passwords import hash_password, needs_rehash, prepare, verify_password
from stepwatch.secretfile import read_secret_file

__all__ = ["Role", "Sessions", "User", "UserBook"]

log = logging.getLogger(__name__)
SESSION_LIFETIME_S = 14 * 86400  # at most, whatever the activity
SESSION_IDLE_S = 12 * 3600  # unused this long: log in again
MAX_SESSIONS = 100_000


class Role(enum.IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str


def parse_users(text: str, source: str) -> dict[str, User]:
    users: dict[str, User] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or parts[2].upper() not in Role.__members__:
            raise ValueError(f"{source}:{n}: expected 'USER PASSWORD-HASH ROLE' with ROLE "
                             "one of viewer, operator, admin")
        users[parts[0]] = User(parts[0], Role[parts[2].upper()], parts[1])
    return users


class UserBook:
    """The users file, or none (everyone is admin, loopback only). Each lookup checks whether
    the file changed (one stat) and reads it again if so; a new version that does not parse
    or is writable by others is refused with an ERROR and the previous users stay."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._users: dict[str, User] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        if path is not None:
            self._users = parse_users(read_secret_file(path), str(path))
            self._stamp = self._stat()
            prepare()

    @property
    def configured(self) -> bool:
        return self.path is not None

    def _stat(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        if self.path is None:
            return
        stamp = self._stat()
        if stamp == self._stamp:
            return
        with self._lock:
            self._stamp = stamp
            try:
                self._users = parse_users(read_secret_file(self.path), str(self.path))
                log.info("ui users: %d from %s", len(self._users), self.path)
            except (OSError, ValueError) as exc:
                log.error("ui users not reloaded, the previous ones stay: %s", exc)

    def get(self, name: str) -> User | None:
        self._refresh()
        return self._users.get(name)

    def verify(self, name: str, password: str) -> User | None:
        """The user, if the password is theirs (slow on purpose: call it off the event loop).
        A hash below today's parameters is replaced in the file (upgraded at login)."""
        user = self.get(name)
        if not verify_password(password, user.password_hash if user else None) or user is None:
            return None
        if needs_rehash(user.password_hash):
            self._upgrade(user, hash_password(password))
        return user

    def _upgrade(self, user: User, new_hash: str) -> None:
        assert self.path is not None
        with self._lock:
            try:
                lines = read_secret_file(self.path).splitlines(keepends=True)
                out = []
                for line in lines:
                    parts = line.split("#", 1)[0].split()
                    if len(parts) == 3 and parts[0] == user.name and parts[1] == user.password_hash:
                        line = line.replace(user.password_hash, new_hash, 1)
                    out.append(line)
                mode = os.stat(self.path).st_mode & 0o777
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ui-users.")
                with os.fdopen(fd, "w") as f:
                    f.write("".join(out))
                os.chmod(tmp, mode)
                os.replace(tmp, self.path)
                log.info("ui users: %s's password hash upgraded to argon2id", user.name)
            except OSError as exc:  # a read-only file stays as it is; the login still succeeds
                log.warning("ui users: could not upgrade %s's password hash: %s", user.name, exc)


@dataclass
class _Session:
    user: str
    created: float
    seen: float


class Sessions:
    """Server-side sessions: random id -> user name. Ids are never reused."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_id: dict[str, _Session] = {}

    def start(self, user: str) -> str:
        now = self._clock()
        if len(self._by_id) >= MAX_SESSIONS:
            self._prune(now)
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = _Session(user, now, now)
        return sid

    def user(self, sid: object) -> str | None:
        """The user of a live session, or None (unknown, ended or expired)."""
        if not isinstance(sid, str):
            return None
        s = self._by_id.get(sid)
        if s is None:
            return None
        now = self._clock()
        if now - s.created > SESSION_LIFETIME_S or now - s.seen > SESSION_IDLE_S:
            del self._by_id[sid]
            return None
        s.seen = now
        return s.user

    def end(self, sid: object) -> None:
        if isinstance(sid, str):
            self._by_id.pop(sid, None)

    def _prune(self, now: float) -> None:
        for sid in [k for k, s in self._by_id.items()
                    if now - s.created > SESSION_LIFETIME_S or now - s.seen > SESSION_IDLE_S]:
            del self._by_id[sid]
        while len(self._by_id) >= MAX_SESSIONS:  # still full: the oldest go
            self._by_id.pop(next(iter(self._by_id)))
