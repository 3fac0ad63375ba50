"""Log in and out over plain HTTP (a form, no script): the session id is replaced at login
and at logout, ``next`` is only ever a path on this site, and attempts are throttled per
client address and per user, with the password check off the event loop, two at a time."""

from __future__ import annotations

import asyncio
import html
from urllib.parse import quote, urlsplit

from fastapi import Request
from nicegui import app
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .. import access
from ..security import safe_next

__all__ = ["register"]

PARALLEL_CHECKS = 2  # password hashes computed at once (each ~64 MiB and a fraction of a second)
FIELD_MAX = 256
_checks: asyncio.Semaphore | None = None

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Stepwatch login</title>
<style>
body {{ font-family: system-ui, sans-serif; display: flex; min-height: 100vh; margin: 0;
  align-items: center; justify-content: center; background: #f5f5f5; color: #212121; }}
form {{ background: #fff; padding: 28px; border-radius: 8px; box-shadow: 0 1px 4px #0003;
  display: flex; flex-direction: column; gap: 12px; width: min(320px, 86vw); }}
input {{ width: 100%; box-sizing: border-box; padding: 8px; font-size: 1rem; }}
button {{ padding: 8px; font-size: 1rem; background: #37474f; color: #fff; border: 0;
  border-radius: 4px; cursor: pointer; }}
.sw-login-error {{ color: #c62828; min-height: 1.2em; }}
@media (prefers-color-scheme: dark) {{ body {{ background: #121212; color: #eee; }}
  form {{ background: #1e1e1e; }} .sw-login-error {{ color: #ff8a80; }} }}
</style></head><body>
<form method="post" action="/login">
<h2 style="margin:0">Stepwatch</h2>
<input type="hidden" name="next" value="{next}">
<label class="sw-login-user">user <input name="user" autocomplete="username" autofocus
  maxlength="{max}" value="{user}"></label>
<label class="sw-login-password">password <input name="password" type="password"
  autocomplete="current-password" maxlength="{max}"></label>
<button class="sw-login" type="submit">Log in</button>
<div class="sw-login-error" role="alert">{error}</div>
</form></body></html>"""


def page(next_path: str, error: str = "", user: str = "", status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(next=html.escape(safe_next(next_path)), error=html.escape(error),
                                    user=html.escape(user), max=FIELD_MAX), status_code=status)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


async def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002 - its name
    return page(next)


async def login(request: Request) -> Response:
    acc = access.get()
    form = await request.form()
    name = str(form.get("user", ""))[:FIELD_MAX]
    password = str(form.get("password", ""))[:FIELD_MAX]
    target = safe_next(str(form.get("next", "/")))
    if not _same_origin(request):
        return Response("origin not allowed", status_code=403)
    if acc.proxy_header is not None or not acc.book.configured:
        return page(target, "log in through the proxy" if acc.proxy_header else "no users here",
                    status=400)
    address = request.client.host if request.client else "?"
    keys = (f"address:{address}", f"user:{name}")
    wait = acc.throttle.wait_s(keys)
    if wait > 0:
        return page(target, f"too many attempts: try again in {wait:.0f} s", name, status=429)
    global _checks
    _checks = _checks or asyncio.Semaphore(PARALLEL_CHECKS)
    async with _checks:
        user = await asyncio.to_thread(acc.book.verify, name, password)
    if user is None:
        acc.throttle.failed(keys)
        return page(target, "wrong user or password", name, status=401)
    acc.throttle.succeeded((f"user:{name}",))
    acc.sessions.end(request.session.get(access.SESSION_KEY))
    request.session.clear()  # a new session, whatever cookie came in (no fixation)
    request.session[access.SESSION_KEY] = acc.sessions.start(user.name)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    access.get().sessions.end(request.session.get(access.SESSION_KEY))
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def login_redirect(path: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(path)}")


def register() -> None:
    app.add_api_route("/login", login_form, methods=["GET"], include_in_schema=False)
    app.add_api_route("/login", login, methods=["POST"], include_in_schema=False)
    app.add_api_route("/logout", logout, methods=["GET", "POST"], include_in_schema=False)
