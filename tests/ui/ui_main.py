"""Main file for NiceGUI's user simulation: the real pages, pointed at STEPWATCH_TARGET."""

import os

from nicegui import ui

from ui_service.app import build

build(os.environ["STEPWATCH_TARGET"])
ui.run(storage_secret="test", reload=False)
