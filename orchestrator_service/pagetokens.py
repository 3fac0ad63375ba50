"""Opaque page tokens for the List RPCs, signed with the database's secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from .errors import invalid

__all__ = ["PageTokens"]


class PageTokens:
    """Opaque page tokens, signed with the database's secret: forged ones are refused.

    A token names its query (``scope``): one issued for another query is refused too.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, scope: str, value: str) -> str:
        body = f"v3\n{scope}\n{value}"
        return base64.urlsafe_b64encode(f"{body}\n{self._mac(body)}".encode()).decode()

    def open(self, token: str, scope: str) -> str | None:
        """The value a token of this scope carries; None for no token."""
        if not token:
            return None
        try:
            if len(token) > 2000:
                raise ValueError("too long")
            body, _, mac = base64.urlsafe_b64decode(token.encode()).decode().rpartition("\n")
            version, got_scope, value = body.split("\n", 2)
            if version != "v3" or not hmac.compare_digest(mac, self._mac(body)):
                raise ValueError("not signed by this server")
            if got_scope != scope:
                raise ValueError("issued for another query")
            return value
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise invalid("page_token", "is not a token this server issued for this query") from None

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()[:32]
