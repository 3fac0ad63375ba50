"""The server's definitions folder: ``*.toml`` files, read when asked (edits apply at once)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .definitions import DefinitionError, JobDefinition, parse_definition
from .step_types.base import StepType

log = logging.getLogger(__name__)


class DefinitionNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Entry:
    definition: JobDefinition
    source: str
    path: Path


class Catalog:
    def __init__(self, folder: Path | None, step_types: Mapping[str, StepType]) -> None:
        self.folder = folder
        self.step_types = step_types

    def entries(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        if self.folder is None or not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("*.toml")):
            source = path.read_text(encoding="utf-8")
            try:
                definition = parse_definition(source, self.step_types)
            except DefinitionError as exc:
                log.warning("definition %s is invalid and not listed: %s", path, exc)
                continue
            found.setdefault(definition.name, Entry(definition, source, path))
        return found

    def get(self, name: str) -> Entry:
        entry = self.entries().get(name)
        if entry is None:
            raise DefinitionNotFound(name)
        return entry
