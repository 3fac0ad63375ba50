"""Stepwatch web UI (NiceGUI): renders only what the orchestrator streams."""
