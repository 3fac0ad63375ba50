"""Bearer tokens: made here (`stepwatch token create`), checked by the orchestrator against
the SHA-256 hashes in its token file. Only the hash is ever written down."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["ROLES", "digest", "new_token"]

ROLES = ("viewer", "operator", "admin")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(role: str, name: str) -> tuple[str, str]:
    """A fresh token and the token-file line that admits it."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name.strip() or "\n" in name:
        raise ValueError("name must be one line")
    token = "sw_" + secrets.token_urlsafe(32)
    return token, f"{role} {digest(token)} {name.strip()}"
