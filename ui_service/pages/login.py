"""The login page (only when users are configured)."""

from __future__ import annotations

from nicegui import app, ui

from .. import access


def register() -> None:
    @ui.page("/login", title="Stepwatch login")
    def login_page(next: str = "/") -> None:  # noqa: A002 - the query parameter's name
        target = next if next.startswith("/") and not next.startswith("//") else "/"

        def attempt() -> None:
            user = access.users().login(name.value or "", password.value or "")
            if user is None:
                error.set_text("wrong user or password")
                return
            app.storage.user.update(user=user.name, role=int(user.role))
            ui.navigate.to(target)

        with ui.card().classes("absolute-center q-pa-lg"):
            ui.label("Stepwatch").classes("text-h5")
            name = ui.input("user").mark("login-user").classes("sw-login-user")
            password = ui.input("password", password=True).mark("login-password").classes(
                "sw-login-password").on("keydown.enter", attempt)
            ui.button("Log in", on_click=attempt).mark("login").classes("sw-login")
            error = ui.label("").classes("text-negative sw-login-error")
