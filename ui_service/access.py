"""Who is at the page, decided again at every request and every page event: the session's
user looked up in the users file as it is now (removed: logged out; re-roled: the new role),
or the user a trusted proxy names (security.Guard drops that header from anyone else)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nicegui import app, context

from .throttle import Throttle
from .users import Role, Sessions, User, UserBook

__all__ = ["Access", "can_act", "can_admin", "configure", "current", "get", "role"]

SESSION_KEY = "sid"


@dataclass
class Access:
    book: UserBook = field(default_factory=lambda: UserBook(None))
    proxy_header: str | None = None
    sessions: Sessions = field(default_factory=Sessions)
    throttle: Throttle = field(default_factory=Throttle)

    @property
    def required(self) -> bool:
        return self.book.configured or self.proxy_header is not None

    def user_of(self, session: Any, headers: Any) -> User | None:
        """The user of a request: its session's, or its (trusted) proxy header's."""
        if self.proxy_header is not None:
            name = str(headers.get(self.proxy_header, "")).strip()
            if not name:
                return None
            known = self.book.get(name)
            return User(name, known.role if known else Role.VIEWER, "")
        user = self.sessions.user(session.get(SESSION_KEY))
        return self.book.get(user) if user is not None else None


_access = Access()


def configure(access: Access) -> None:
    global _access
    _access = access


def get() -> Access:
    return _access


def current() -> User | None:
    """The user of this page (None: nobody, or no longer a user)."""
    if not _access.required:
        return User("", Role.ADMIN, "")
    request = context.client.request
    return _access.user_of(app.storage.browser, request.headers if request else {})


def role() -> Role | None:
    user = current()
    return user.role if user is not None else None


def can_act() -> bool:
    """Run, Cancel and Rerun: an operator's (checked again when the button is used)."""
    r = role()
    return r is not None and r >= Role.OPERATOR


def can_admin() -> bool:
    """Schedules and webhooks: an admin's to change (checked again by the orchestrator)."""
    r = role()
    return r is not None and r >= Role.ADMIN
