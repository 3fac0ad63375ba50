"""The server's definitions folder: ``*.toml`` files, read when asked (edits apply at once)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .definitions import DefinitionError, JobDefinition, Violation, clip, parse_definition
from .problems import Code, ServerError
from .step_types.base import StepType

log = logging.getLogger(__name__)


class DefinitionNotFound(ServerError, LookupError):
    code = Code.NOT_FOUND

    def public_message(self) -> str:
        return f"definition {clip(repr(self.args[0]))} not found in the definitions folder"


@dataclass(frozen=True)
class Entry:
    definition: JobDefinition
    source: str
    path: Path


@dataclass(frozen=True)
class Broken:
    """A definition file that does not parse: listed under its file's name, with why."""

    name: str
    path: Path
    error: DefinitionError


class Catalog:
    def __init__(self, folder: Path | None, step_types: Mapping[str, StepType]) -> None:
        self.folder = folder
        self.step_types = step_types

    def entries(self) -> dict[str, Entry | Broken]:
        found: dict[str, Entry | Broken] = {}
        if self.folder is None or not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("*.toml")):
            try:
                source = path.read_text(encoding="utf-8")
                definition = parse_definition(source, self.step_types)
            except (DefinitionError, OSError, UnicodeDecodeError) as exc:
                error = exc if isinstance(exc, DefinitionError) else DefinitionError(
                    [Violation("definition_file", f"cannot read {path.name}: {exc}")])
                log.warning("definition file %s is invalid: %s", path, error)
                found.setdefault(path.stem, Broken(path.stem, path, error))
                continue
            found.setdefault(definition.name, Entry(definition, source, path))
        return found

    def get(self, name: str) -> Entry:
        entry = self.entries().get(name)
        if entry is None:
            raise DefinitionNotFound(name)
        if isinstance(entry, Broken):
            raise DefinitionError([Violation(v.field, v.description) for v in entry.error.violations],
                                  prefix=f"invalid definition file {entry.path.name}")
        return entry
