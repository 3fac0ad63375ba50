"""The UI as a web app, at the ASGI layer: which Host and Origin it answers, which peer may
assert a user through a proxy header, and the headers every response carries.

Scripts: every ``<script>`` NiceGUI's page template writes gets a fresh nonce per response,
and the CSP allows only scripts from this origin or with that nonce, so markup that reached
the DOM from data (an ``<img onerror>``, an injected ``<script>``) does not run.
'unsafe-eval' stays: NiceGUI compiles its Vue templates in the page and runs
``ui.run_javascript`` with eval. Styles keep 'unsafe-inline' (Quasar sets inline styles);
a style cannot run script.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Guard", "allowed_hosts", "csp", "parse_networks", "safe_next"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCRIPT_TAG = re.compile(rb"<script(?=[\s>])", re.IGNORECASE)
MAX_HTML = 32 << 20  # a page larger than this is passed through unmodified (and without nonce)


def csp(nonce: str | None) -> str:
    scripts = f"'self' 'nonce-{nonce}' 'unsafe-eval'" if nonce else "'self' 'unsafe-eval'"
    return (f"default-src 'self'; script-src {scripts}; script-src-attr 'none'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
            "connect-src 'self' ws: wss:; object-src 'none'; frame-ancestors 'none'; "
            "base-uri 'self'; form-action 'self'")


def _headers(nonce: str | None) -> list[tuple[bytes, bytes]]:
    return [(b"x-frame-options", b"DENY"), (b"content-security-policy", csp(nonce).encode()),
            (b"referrer-policy", b"same-origin"), (b"x-content-type-options", b"nosniff")]


def parse_networks(values: Sequence[str]) -> list[Network]:
    """CIDRs (``10.0.0.5/32``, ``127.0.0.1/32``, ``fd00::/8``); a bare address is one host."""
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip()]


def peer_in(networks: Sequence[Network], scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    return any(address in net for net in networks)


def allowed_hosts(bind: str, extra: list[str]) -> set[str]:
    """Host names the UI answers to: the bind address, localhost, and those given."""
    hosts = {"localhost", "127.0.0.1", "[::1]", *(h.lower() for h in extra)}
    if bind not in ("0.0.0.0", "::", ""):
        hosts.add(bind.lower())
    return hosts


def safe_next(value: str) -> str:
    """Where to go after login: a path on this site, else "/". Browsers read ``\\`` as ``/``
    and drop tabs and newlines, so ``/\\evil`` and ``/\\t/evil`` would leave the site."""
    if (not value.startswith("/") or any(c in value for c in "\\\t\r\n")
            or value.startswith("//") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)):
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def _host_only(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """Pure ASGI (HTTP and websocket alike): a request for another Host is refused (DNS
    rebinding), a websocket or socket.io call from another Origin is refused, the proxy user
    header is dropped unless the peer is a trusted proxy, and every HTTP response carries the
    security headers (HTML with a script nonce)."""

    def __init__(self, app: ASGIApp, hosts: set[str], proxy_header: str | None = None,
                 trusted: Sequence[Network] = ()) -> None:
        self.app = app
        self.hosts = hosts
        self.proxy_header = proxy_header.lower().encode("latin-1") if proxy_header else None
        self.trusted = list(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = scope.get("headers", [])
        if self.proxy_header is not None and not peer_in(self.trusted, scope):
            # Only a trusted proxy may say who the user is; from anyone else the header is gone.
            scope = {**scope, "headers": [(k, v) for k, v in raw if k.lower() != self.proxy_header]}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        if _host_only(headers.get("host", "")) not in self.hosts:
            await self._refuse(scope, send, b"host not allowed")
            return
        origin = headers.get("origin")
        realtime = scope["type"] == "websocket" or scope.get("path", "").startswith("/_nicegui_ws")
        if realtime and origin is not None and _host_only(urlsplit(origin).netloc) not in self.hosts:
            await self._refuse(scope, send, b"origin not allowed")
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _Secured(send))

    @staticmethod
    async def _refuse(scope: Scope, send: Send, why: bytes) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 400 if b"host" in why else 403,
                    "headers": [(b"content-type", b"text/plain"), *_headers(None)]})
        await send({"type": "http.response.body", "body": why})


class _Secured:
    """Adds the headers to a response; an HTML body is held whole to put the nonce on its
    script tags (NiceGUI escapes ``<`` in data it writes into the page, so only the
    template's own tags match)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.body: list[bytes] = []
        self.size = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            if kind.startswith(b"text/html"):
                self.start = {**message, "headers": headers}
                return
            await self.send({**message, "headers": [*headers, *_headers(None)]})
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.body.append(message.get("body", b""))
        self.size += len(self.body[-1])
        if message.get("more_body", False) and self.size <= MAX_HTML:
            return
        body = b"".join(self.body)
        nonce = secrets.token_urlsafe(18) if not message.get("more_body", False) else None
        if nonce is not None:
            body = _SCRIPT_TAG.sub(b'<script nonce="' + nonce.encode() + b'"', body)
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
        if nonce is not None:
            headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": [*headers, *_headers(nonce)]})
        self.start = None
        await self.send({**message, "body": body})
