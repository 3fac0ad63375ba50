"""scan_files: one child per matching file; each becomes a document of the job."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..beneath import list_beneath, stat_beneath
from .base import Child, DocumentPut, OptionError, StepContext, StepType, check_known, string_list


class ScanFiles(StepType):
    name = "scan_files"
    sync_children = True

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
        # From here on nothing is resolved by path: the walk holds descriptors beneath the
        # workspace and enters no symlink, however the tree changes under it.
        top = ctx.workspace.resolve()
        rel_root = root.relative_to(top).as_posix() if root != top else "."
        paths = await asyncio.to_thread(list_beneath, top, rel_root, ctx.options["include"],
                                        ctx.options["exclude"])
        return [Child(key=p) for p in paths]

    def run_child_sync(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        # Opened beneath the workspace again, without following a link on the way: a folder
        # swapped for a symlink since the scan tells nothing of where it leads.
        st = stat_beneath(ctx.beneath, child.key, ctx.allow_hardlinks)
        return [DocumentPut(child.key, tags=file_tags(child.key, ctx.options["tags"]),
                            attrs={"size": st.st_size})]


OUTSIDE = "must be a folder inside the workspace (relative, without '..', not leading out)"


def confined(relative: str) -> bool:
    """A relative path or pattern that cannot climb out: not absolute, no '..' part."""
    p = PurePosixPath(relative)
    return not p.is_absolute() and ".." not in p.parts and not relative.startswith("~")


def inside(path: Path, workspace: Path) -> Path | None:
    """The path with every symlink resolved, if it stays inside the workspace; else None."""
    real, top = path.resolve(), workspace.resolve()
    return real if real == top or top in real.parents else None


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
