"""Process entry: the NiceGUI app, talking to the orchestrator only through `stepwatch`."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import app, ui
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from stepwatch.net import is_loopback

from . import access, metrics
from .pages import job, login, queue
from .pages.widgets import CSS
from .security import Guard, Users, allowed_hosts

# The login page, NiceGUI's own assets and socket, and metrics (scraped without a login).
OPEN_PATHS = ("/login", "/_nicegui", "/metrics")


class LoginRequired(BaseHTTPMiddleware):
    """Pages need a logged-in user once users are configured; a trusted proxy header logs
    its user in on every request."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        users = access.users()
        if users.required:
            proxied = users.from_proxy({k.lower(): v for k, v in request.headers.items()})
            if proxied is not None:
                app.storage.user.update(user=proxied.name, role=int(proxied.role))
            elif users.proxy_header is not None:
                app.storage.user.clear()  # no header: nobody (the proxy decides who)
            if not app.storage.user.get("user") and not request.url.path.startswith(OPEN_PATHS):
                return RedirectResponse(f"/login?next={quote(request.url.path)}")
        return await call_next(request)


def build(target: str) -> None:
    """Register the pages against an orchestrator at ``target``."""
    ui.add_css(CSS, shared=True)
    app.add_api_route("/metrics", lambda: Response(metrics.render(),
                                                   media_type="text/plain; version=0.0.4"))
    queue.register(target)
    job.register(target)
    login.register()


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m ui_service", description="Stepwatch web UI")
    p.add_argument("--host", default=env("STEPWATCH_UI_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("STEPWATCH_UI_PORT", "8080")))
    p.add_argument("--target", default=env("STEPWATCH_TARGET", "127.0.0.1:50051"),
                   help="orchestrator host:port")
    p.add_argument("--token", default=env("STEPWATCH_TOKEN"),
                   help="this UI's token for the orchestrator (also STEPWATCH_TOKEN_FILE)")
    p.add_argument("--ui-auth-file", default=env("STEPWATCH_UI_AUTH_FILE"),
                   help="'USER PASSWORD-HASH ROLE' lines (stepwatch ui-user); pages need a login")
    p.add_argument("--trust-proxy-user-header", default=env("STEPWATCH_UI_PROXY_USER_HEADER"),
                   help="take the user from this header set by an authenticating proxy, e.g. "
                        "X-Forwarded-User (role from --ui-auth-file, else viewer)")
    p.add_argument("--allowed-host", action="append", default=[
        h for h in env("STEPWATCH_UI_ALLOWED_HOSTS", "").split(",") if h],
                   help="a Host name the UI answers (repeat; default: the bind address, localhost)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="listen beyond loopback without users (everyone may cancel any job)")
    p.add_argument("--secure-cookies", action="store_true",
                   help="mark the session cookie Secure (the UI is served over HTTPS)")
    a = p.parse_args(argv)
    if a.token:
        os.environ["STEPWATCH_TOKEN"] = a.token  # every Client of this process sends it
    try:
        users = Users.load(Path(a.ui_auth_file) if a.ui_auth_file else None,
                           a.trust_proxy_user_header)
    except (OSError, ValueError) as exc:
        print(f"stepwatch ui: cannot read --ui-auth-file: {exc}", file=sys.stderr)
        sys.exit(2)
    if not users.required and not is_loopback(a.host) and not a.insecure_no_auth:
        print(f"stepwatch ui: --host {a.host} is reachable from other machines and there are no "
              "users: give --ui-auth-file or --trust-proxy-user-header, or --insecure-no-auth",
              file=sys.stderr)
        sys.exit(2)
    access.configure(users)
    app.add_middleware(LoginRequired)
    app.add_middleware(Guard, hosts=allowed_hosts(a.host, a.allowed_host))
    build(a.target)
    app.on_startup(lambda: print(f"stepwatch ui listening on {a.host}:{a.port} "
                                 f"(orchestrator {a.target})", flush=True))
    # dark=None: light or dark as the browser prefers (prefers-color-scheme).
    # socket.io: only this UI's own origins (engine.io checks the Origin header).
    from nicegui import core
    core.sio.eio.cors_allowed_origins = [
        f"{scheme}://{h}{port}" for h in allowed_hosts(a.host, a.allowed_host)
        for scheme in ("http", "https") for port in ("", f":{a.port}")]
    ui.run(host=a.host, port=a.port, title="Stepwatch", reload=False, show=False, dark=None,
           favicon="🟢", uvicorn_logging_level="warning",
           storage_secret=env("STEPWATCH_UI_SECRET") or secrets.token_urlsafe(32),
           session_middleware_kwargs={"same_site": "lax", "https_only": a.secure_cookies})
