"""Process entry: the NiceGUI app, talking to the orchestrator only through `stepwatch`."""

from __future__ import annotations

import argparse
import os

from nicegui import app, ui

from .pages import job, queue
from .pages.widgets import CSS


def build(target: str) -> None:
    """Register the pages against an orchestrator at ``target``."""
    ui.add_css(CSS, shared=True)
    queue.register(target)
    job.register(target)


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m ui_service", description="Stepwatch web UI")
    p.add_argument("--host", default=env("STEPWATCH_UI_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("STEPWATCH_UI_PORT", "8080")))
    p.add_argument("--target", default=env("STEPWATCH_TARGET", "127.0.0.1:50051"),
                   help="orchestrator host:port")
    a = p.parse_args(argv)
    build(a.target)
    app.on_startup(lambda: print(f"stepwatch ui listening on {a.host}:{a.port} "
                                 f"(orchestrator {a.target})", flush=True))
    # dark=None: light or dark as the browser prefers (prefers-color-scheme).
    ui.run(host=a.host, port=a.port, title="Stepwatch", reload=False, show=False, dark=None,
           favicon="🟢", uvicorn_logging_level="warning")
