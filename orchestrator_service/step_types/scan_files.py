"""scan_files: one child per matching file; each becomes a document of the job."""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import Child, DocumentPut, OptionError, StepContext, StepType, check_known, string_list


class ScanFiles(StepType):
    name = "scan_files"

    def validate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        check_known(options, {"root", "include", "exclude", "tags"}, self.name)
        root = options.get("root", ".")
        if not isinstance(root, str) or not root:
            raise OptionError("root", "must be a non-empty string (a folder under the workspace)")
        return {
            "root": root,
            "include": string_list(options, "include", required=True),
            "exclude": string_list(options, "exclude", required=False),
            "tags": string_list(options, "tags", required=False),
        }

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        root = (ctx.workspace / ctx.options["root"]).resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"root folder not found: {root}")
        paths = await asyncio.to_thread(
            matching_files, root, ctx.options["include"], ctx.options["exclude"]
        )
        return [Child(key=_relative(p, ctx.workspace), payload=p) for p in paths]

    async def run_child(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        path: Path = child.payload
        size = (await asyncio.to_thread(path.stat)).st_size
        return [DocumentPut(child.key, tags=file_tags(child.key, ctx.options["tags"]),
                            attrs={"size": size})]


def matching_files(root: Path, include: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    """Files under root matching any include glob and no exclude pattern, sorted."""
    found: set[Path] = set()
    for pattern in include:
        for path in root.glob(pattern):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and not any(fnmatch.fnmatch(rel, ex) for ex in exclude):
                found.add(path)
    return sorted(found)


def file_tags(rel_path: str, extra: Sequence[str]) -> tuple[str, ...]:
    """Tags of a scanned file: its extension, its top folder, then the step's tags."""
    parts = rel_path.split("/")
    tags: list[str] = []
    suffix = Path(parts[-1]).suffix.lstrip(".")
    if suffix:
        tags.append(suffix)
    if len(parts) > 1:
        tags.append(parts[0])
    tags.extend(t for t in extra if t not in tags)
    return tuple(tags)


def _relative(path: Path, workspace: Path) -> str:
    try:
        return path.relative_to(workspace.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
