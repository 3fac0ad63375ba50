"""Process entry: the NiceGUI app, talking to the orchestrator only through `stepwatch`."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import NoReturn

from fastapi import Request
from nicegui import app, ui
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from stepwatch.net import is_loopback
from stepwatch.secretfile import read_token_file

from . import access, metrics
from .pages import automation, job, login, queue
from .pages.automation import CSS as AUTOMATION_CSS
from .pages.queue import CSS as QUEUE_CSS
from .pages.step_list import CSS as STEP_LIST_CSS
from .pages.widgets import CSS
from .security import Guard, allowed_hosts, parse_networks
from .users import UserBook

# The login page, NiceGUI's own assets and socket, and metrics (scraped without a login).
RECONNECT_S = 15.0
OPEN_PATHS = ("/login", "/logout", "/_nicegui", "/metrics")


class LoginRequired(BaseHTTPMiddleware):
    """Pages need a user once users (or a proxy) are configured, looked up again on every
    request: a user removed from the file is sent to log in, whatever their cookie says."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        acc = access.get()
        if acc.required and not request.url.path.startswith(OPEN_PATHS):
            if acc.user_of(request.session, request.headers) is None:
                if acc.proxy_header is not None:
                    return Response("no user: this UI takes its users from an authenticating "
                                    "proxy", status_code=401, media_type="text/plain")
                acc.sessions.end(request.session.get(access.SESSION_KEY))
                request.session.pop(access.SESSION_KEY, None)
                return login.login_redirect(request.url.path)
        return await call_next(request)


def build(target: str) -> None:
    """Register the pages against an orchestrator at ``target``."""
    ui.add_css(CSS, shared=True)
    ui.add_css(STEP_LIST_CSS, shared=True)
    ui.add_css(QUEUE_CSS, shared=True)
    ui.add_css(AUTOMATION_CSS, shared=True)
    app.add_api_route("/metrics", lambda: Response(metrics.render(),
                                                   media_type="text/plain; version=0.0.4"))
    queue.register(target)
    job.register(target)
    automation.register(target)
    login.register()


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m ui_service", description="Stepwatch web UI")
    p.add_argument("--host", default=env("STEPWATCH_UI_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("STEPWATCH_UI_PORT", "8080")))
    p.add_argument("--target", default=env("STEPWATCH_TARGET", "127.0.0.1:50051"),
                   help="orchestrator host:port")
    p.add_argument("--token", default=None,
                   help="this UI's token for the orchestrator: visible in `ps`, prefer "
                        "--token-file or STEPWATCH_TOKEN_FILE")
    p.add_argument("--token-file", default=env("STEPWATCH_TOKEN_FILE"),
                   help="a file holding this UI's token for the orchestrator")
    p.add_argument("--ui-auth-file", default=env("STEPWATCH_UI_AUTH_FILE"),
                   help="'USER PASSWORD-HASH ROLE' lines (stepwatch ui-user), read again when "
                        "it changes; pages need a login")
    p.add_argument("--trust-proxy-user-header", default=env("STEPWATCH_UI_PROXY_USER_HEADER"),
                   help="take the user from this header set by an authenticating proxy, e.g. "
                        "X-Forwarded-User (role from --ui-auth-file, else viewer); needs "
                        "--trusted-proxy")
    p.add_argument("--trusted-proxy", action="append", default=[
        c for c in env("STEPWATCH_UI_TRUSTED_PROXIES", "").split(",") if c],
                   help="CIDR of a proxy whose user header is believed (repeat; a proxy on this "
                        "host is 127.0.0.1/32); from any other peer the header is dropped")
    p.add_argument("--allowed-host", action="append", default=[
        h for h in env("STEPWATCH_UI_ALLOWED_HOSTS", "").split(",") if h],
                   help="a Host name the UI answers (repeat; default: the bind address, localhost)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="listen beyond loopback without users (everyone may cancel any job)")
    p.add_argument("--secure-cookies", action="store_true",
                   help="mark the session cookie Secure (the UI is served over HTTPS)")
    a = p.parse_args(argv)
    if a.token is not None:
        print("stepwatch ui: WARNING: --token on the command line is visible to every user of "
              "this machine (ps); use --token-file or STEPWATCH_TOKEN_FILE", file=sys.stderr)
    try:
        token = a.token or env("STEPWATCH_TOKEN") or (
            read_token_file(Path(a.token_file)) if a.token_file else None)
    except (OSError, ValueError) as exc:
        _exit(f"cannot read --token-file: {exc}")
    if token:
        os.environ["STEPWATCH_TOKEN"] = token  # every Client of this process sends it
    try:
        trusted = parse_networks(a.trusted_proxy)
    except ValueError as exc:
        _exit(f"--trusted-proxy: {exc}")
    if a.trust_proxy_user_header and not trusted:
        _exit("--trust-proxy-user-header needs --trusted-proxy CIDR (the proxy's address; "
              "127.0.0.1/32 for one on this host): otherwise anyone could send the header")
    try:
        book = UserBook(Path(a.ui_auth_file) if a.ui_auth_file else None)
    except (OSError, ValueError) as exc:
        _exit(f"cannot read --ui-auth-file: {exc}")
    acc = access.Access(book, a.trust_proxy_user_header.lower() if a.trust_proxy_user_header
                        else None)
    if not acc.required and not is_loopback(a.host) and not a.insecure_no_auth:
        _exit(f"--host {a.host} is reachable from other machines and there are no users: give "
              "--ui-auth-file or --trust-proxy-user-header, or --insecure-no-auth")
    access.configure(acc)
    app.add_middleware(LoginRequired)
    app.add_middleware(Guard, hosts=allowed_hosts(a.host, a.allowed_host),
                       proxy_header=acc.proxy_header, trusted=trusted)
    build(a.target)
    if not port_free(a.host, a.port):  # said before NiceGUI starts, not after "ready"
        _exit(f"cannot listen on {a.host}:{a.port}: the address is in use (another Stepwatch "
              "UI? choose --port)")
    app.on_startup(lambda: print(f"stepwatch ui listening on {a.host}:{a.port} "
                                 f"(orchestrator {a.target})", flush=True))
    # dark=None: light or dark as the browser prefers (prefers-color-scheme).
    # socket.io: only this UI's own origins (engine.io checks the Origin header).
    from nicegui import core
    core.sio.eio.cors_allowed_origins = [
        f"{scheme}://{h}{port}" for h in allowed_hosts(a.host, a.allowed_host)
        for scheme in ("http", "https") for port in ("", f":{a.port}")]
    ui.run(host=a.host, port=a.port, title="Stepwatch", reload=False, show=False, dark=None,
           favicon="🟢", uvicorn_logging_level="warning", show_welcome_message=False,
           # A page whose socket drops keeps its state this long (NiceGUI's default, 3 s, made a
           # loaded 2-core machine reload pages mid-job).
           reconnect_timeout=_reconnect_s(),
           storage_secret=env("STEPWATCH_UI_SECRET") or secrets.token_urlsafe(32),
           session_middleware_kwargs={"same_site": "lax", "https_only": a.secure_cookies})


def _reconnect_s() -> float:
    """How long a page whose socket dropped keeps its state (STEPWATCH_UI_RECONNECT_S)."""
    try:
        value = float(os.environ.get("STEPWATCH_UI_RECONNECT_S", RECONNECT_S))
    except ValueError:
        _exit("STEPWATCH_UI_RECONNECT_S must be a number of seconds")
    if not 0 < value <= 3600:
        _exit("STEPWATCH_UI_RECONNECT_S must be from 0 to 3600 seconds")
    return value


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (as uvicorn will, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _exit(message: str) -> NoReturn:
    print(f"stepwatch ui: {message}", file=sys.stderr)
    sys.exit(2)
