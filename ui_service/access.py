"""Who is at the page: the logged-in user's role decides what the page offers."""

from __future__ import annotations

from nicegui import app

from .security import Role, Users

__all__ = ["can_act", "configure", "role", "users"]

_users = Users()


def configure(users: Users) -> None:
    global _users
    _users = users


def users() -> Users:
    return _users


def role() -> Role:
    """The role of this page's user; everyone is admin when no users are configured."""
    if not _users.required:
        return Role.ADMIN
    number = app.storage.user.get("role", 0)
    return Role(number) if number in Role._value2member_map_ else Role.VIEWER


def can_act() -> bool:
    """Run, Cancel and Rerun: an operator's (checked again when the button is used)."""
    return role() >= Role.OPERATOR
