"""scan_files: one child per matching file; each becomes a document of the job."""

from __future__ import annotations

import asyncio
import fnmatch
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .base import Child, DocumentPut, OptionError, StepContext, StepType, check_known, string_list


class ScanFiles(StepType):
    name = "scan_files"

    def validate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        check_known(options, {"root", "include", "exclude", "tags"}, self.name)
        root = options.get("root", ".")
        if not isinstance(root, str) or not root:
            raise OptionError("root", "must be a non-empty string (a folder under the workspace)")
        if not confined(root):
            raise OptionError("root", OUTSIDE)
        checked = {"root": root,
                   "include": string_list(options, "include", required=True),
                   "exclude": string_list(options, "exclude", required=False),
                   "tags": string_list(options, "tags", required=False)}
        for key in ("include", "exclude"):
            if not all(confined(p) for p in checked[key]):
                raise OptionError(key, "patterns must stay inside the root (relative, without '..')")
        return checked

    def check_paths(self, options: Mapping[str, Any], workspace: Path) -> None:
        # A symlink may lead out of the workspace: refused at submit, whatever it points at
        # (the message is the same whether or not the target exists).
        if inside(workspace / options["root"], workspace) is None:
            raise OptionError("root", OUTSIDE)

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        root = inside(ctx.workspace / ctx.options["root"], ctx.workspace)
        if root is None or not root.is_dir():
            # One message for "missing" and "outside": it must not tell what exists outside.
            raise FileNotFoundError(f"root folder not found in the workspace: "
                                    f"{ctx.options['root']!r}")
        paths = await asyncio.to_thread(
            matching_files, root, ctx.options["include"], ctx.options["exclude"], ctx.workspace
        )
        return [Child(key=_relative(p, ctx.workspace), payload=p) for p in paths]

    async def run_child(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        # The payload is the real path init found inside the workspace; not following a
        # link here means a file swapped for a symlink since tells nothing of its target.
        path: Path = child.payload
        size = (await asyncio.to_thread(os.stat, path, follow_symlinks=False)).st_size
        return [DocumentPut(child.key, tags=file_tags(child.key, ctx.options["tags"]),
                            attrs={"size": size})]


OUTSIDE = "must be a folder inside the workspace (relative, without '..', not leading out)"


def confined(relative: str) -> bool:
    """A relative path or pattern that cannot climb out: not absolute, no '..' part."""
    p = PurePosixPath(relative)
    return not p.is_absolute() and ".." not in p.parts and not relative.startswith("~")


def inside(path: Path, workspace: Path) -> Path | None:
    """The path with every symlink resolved, if it stays inside the workspace; else None."""
    real, top = path.resolve(), workspace.resolve()
    return real if real == top or top in real.parents else None


def matching_files(root: Path, include: Sequence[str], exclude: Sequence[str],
                   workspace: Path | None = None) -> list[Path]:
    """Files under root matching any include glob and no exclude pattern, sorted. A match
    whose real path leaves the workspace (a symlink out) is left out, never read."""
    found: set[Path] = set()
    for pattern in include:
        for path in root.glob(pattern):
            rel = path.relative_to(root).as_posix()
            if workspace is not None and inside(path, workspace) is None:
                continue
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
