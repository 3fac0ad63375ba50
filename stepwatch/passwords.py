"""Password hashes for the web UI's users: argon2id at RFC 9106's second recommended profile
(argon2-cffi's defaults: t=3, m=64 MiB, p=4). Older hashes (scrypt) still verify, and
``needs_rehash`` says when a stored hash is below today's parameters, so the UI can upgrade
it at the user's next login."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["hash_password", "needs_rehash", "prepare", "verify_password"]

_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """A hash of nothing, checked when the user does not exist: the answer takes as long
    either way. Made on first use, not on import (it costs ~0.1 s every CLI command paid)."""
    return _hasher.hash("stepwatch: no such user")


def prepare() -> None:
    """Make the hash an unknown user is checked against now, so the first such login takes
    no longer than any other (a server that checks passwords calls this at start)."""
    _dummy()


def hash_password(password: str) -> str:
    """One word (``$argon2id$v=19$m=65536,t=3,p=4$salt$hash``): it goes on a line of the
    --ui-auth-file."""
    return _hasher.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``; ``None`` runs a check of the same cost and
    answers False (no user: no timing difference)."""
    if stored is None:
        _verify_argon2(password, _dummy())
        return False
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    return _verify_argon2(password, stored)


def needs_rehash(stored: str) -> bool:
    """A hash made with weaker parameters (or scrypt) than hash_password makes today."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _verify_argon2(password: str, stored: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _verify_scrypt(password: str, stored: str) -> bool:
    """The format of earlier versions: ``scrypt$N$r$p$salt$hash``."""
    try:
        _kind, n, r, p, salt, digest = stored.split("$")
        cost, block, par = int(n), int(r), int(p)
        if not (2 <= cost <= 2**20 and 1 <= block <= 32 and 1 <= par <= 16):
            return False  # a hostile line must not make one login cost gigabytes
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=cost, r=block, p=par,
                             maxmem=2**31 - 1, dklen=len(_unb64(digest)))
    except (ValueError, TypeError, MemoryError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
