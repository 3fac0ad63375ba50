"""Commands for operators: web UI users, tokens, the database schema."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from stepwatch.cli.base import JSON, app, fail, state
from stepwatch.passwords import hash_password
from stepwatch.tokens import new_token

__all__ = ["migrate", "token_create", "ui_user"]


@app.command("ui-user")
def ui_user(name: Annotated[str, typer.Option(help="the login name")],
            role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
            password: Annotated[str, typer.Option(prompt=True, hide_input=True,
                                                  confirmation_prompt=True)] = "",
            as_json: JSON = False) -> None:
    """Print a --ui-auth-file line for a web UI user (the password is asked for;
    --json: {"name": ..., "role": ..., "line": ...})."""
    if role not in ("viewer", "operator", "admin"):
        fail("role must be one of viewer, operator, admin")
    if not name or any(c.isspace() for c in name):
        fail("the name must be one word")
    line = f"{name} {hash_password(password)} {role}"
    if as_json:
        _json({"name": name, "role": role, "line": line})
        return
    state.out.console.print(line, soft_wrap=True, markup=False)


@app.command()
def migrate(db_url: Annotated[str, typer.Option(
        envvar="STEPWATCH_DB_URL", help="the orchestrator's database (a SQLAlchemy URL)")],
            as_json: JSON = False) -> None:
    """Upgrade a database's schema to this version's, for operators who migrate before a
    rollout (replicas also migrate at start, one at a time, under an advisory lock).

    The schema is the server's: this runs ``python -m orchestrator_service --migrate-only``
    (the client package imports nothing of the server)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("orchestrator_service") is None:
        fail("stepwatch migrate needs the server installed here (the orchestrator_service "
              "package); or run `python -m orchestrator_service --migrate-only` where it is")
    done = subprocess.run([sys.executable, "-m", "orchestrator_service", "--migrate-only",
                           "--port", "0", "--db-url", db_url],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        fail(lines[-1].removeprefix("stepwatch orchestrator: ") if lines else
              f"migration failed (exit {done.returncode})")
    if as_json:
        _json({"schema": "head"})
        return
    state.out.console.print("database schema is at head")


token_app = typer.Typer(help="Tokens for an orchestrator started with --auth-token-file.")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(role: Annotated[str, typer.Option(help="viewer, operator or admin")],
                 name: Annotated[str, typer.Option(help="who or what uses it, e.g. ci")],
                 as_json: JSON = False) -> None:
    """Print a new token, and the line to add to the orchestrator's token file
    (--json: {"token": ..., "line": ...})."""
    try:
        token, line = new_token(role, name)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        _json({"token": token, "line": line})
        return
    state.out.console.print(f"token (give it to {name}; it is shown once): {token}", soft_wrap=True,
                  markup=False)
    state.out.console.print("add this line to the --auth-token-file, then `kill -HUP` the orchestrator:")
    state.out.console.print(line, soft_wrap=True, markup=False)


def _json(data: dict[str, str]) -> None:
    """A local command's answer as one JSON object (no proto message holds it)."""
    state.out.console.file.write(json.dumps(data) + "\n")
