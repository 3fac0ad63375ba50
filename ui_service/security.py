"""The UI as a web app: who is logged in and with which role, which Host and Origin it
answers, and the headers every response carries.

Users come from --ui-auth-file (``user password-hash role`` lines; `stepwatch ui-user`
makes one) or, behind a reverse proxy that authenticates, from a trusted header
(--trust-proxy-user-header X-Forwarded-User; the role from the auth file, else viewer).
Without either, everyone is an admin: the loopback development default.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stepwatch.passwords import verify_password

__all__ = ["Guard", "Role", "Users", "allowed_hosts"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# NiceGUI runs Vue templates compiled in the page (eval) and inline styles: both allowed,
# from this origin only; nothing may frame the page.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
       "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
HEADERS = [(b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.encode()),
           (b"referrer-policy", b"same-origin"), (b"x-content-type-options", b"nosniff")]


class Role(enum.IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str


@dataclass
class Users:
    """The UI's users, or none configured (everyone is admin)."""

    by_name: dict[str, User] = field(default_factory=dict)
    proxy_header: str | None = None

    @classmethod
    def load(cls, path: Path | None, proxy_header: str | None) -> Users:
        users: dict[str, User] = {}
        if path is not None:
            for n, raw in enumerate(path.read_text().splitlines(), 1):
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split()
                if len(parts) != 3 or parts[2].upper() not in Role.__members__:
                    raise ValueError(f"{path}:{n}: expected 'USER PASSWORD-HASH ROLE' with ROLE "
                                     "one of viewer, operator, admin")
                users[parts[0]] = User(parts[0], Role[parts[2].upper()], parts[1])
        return cls(users, proxy_header.lower() if proxy_header else None)

    @property
    def required(self) -> bool:
        return bool(self.by_name) or self.proxy_header is not None

    def login(self, name: str, password: str) -> User | None:
        user = self.by_name.get(name)
        if user is None or self.proxy_header is not None:
            verify_password(password, "scrypt$16384$8$1$AAAA$AAAA")  # same time either way
            return None
        return user if verify_password(password, user.password_hash) else None

    def from_proxy(self, headers: dict[str, str]) -> User | None:
        if self.proxy_header is None:
            return None
        name = headers.get(self.proxy_header, "").strip()
        if not name:
            return None
        known = self.by_name.get(name)
        return User(name, known.role if known else Role.VIEWER, "")


def allowed_hosts(bind: str, extra: list[str]) -> set[str]:
    """Host names the UI answers to: the bind address, localhost, and those given."""
    hosts = {"localhost", "127.0.0.1", "[::1]", *(h.lower() for h in extra)}
    if bind not in ("0.0.0.0", "::", ""):
        hosts.add(bind.lower())
    return hosts


def _host_only(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """Pure ASGI (HTTP and websocket alike): a request for another Host is refused (DNS
    rebinding), a websocket or socket.io call from another Origin is refused, and every
    HTTP response carries the security headers."""

    def __init__(self, app: ASGIApp, hosts: set[str], secure: bool = False) -> None:
        self.app = app
        self.hosts = hosts
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if _host_only(headers.get("host", "")) not in self.hosts:
            await self._refuse(scope, send, b"host not allowed")
            return
        origin = headers.get("origin")
        realtime = scope["type"] == "websocket" or scope.get("path", "").startswith("/_nicegui_ws")
        if realtime and origin is not None and _host_only(urlsplit(origin).netloc) not in self.hosts:
            await self._refuse(scope, send, b"origin not allowed")
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, why: bytes) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 400 if b"host" in why else 403,
                    "headers": [(b"content-type", b"text/plain"), *HEADERS]})
        await send({"type": "http.response.body", "body": why})
