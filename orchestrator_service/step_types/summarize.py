"""summarize: one child per document; stores lines, words and bytes on it."""

from __future__ import annotations

import asyncio
import codecs
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from .base import Child, DocumentPut, StepContext, StepType


class Summarize(StepType):
    name = "summarize"

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        return [Child(key=doc.path) for doc in await ctx.documents()]

    async def run_child(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        stats = await asyncio.to_thread(summarize_file, ctx.workspace / child.key,
                                        ctx.workspace.resolve())
        return [DocumentPut(child.key, attrs=stats)]


CHUNK = 1 << 20  # a file is read 1 MiB at a time: a 1 GB file costs 1 MiB of memory


def _open_inside(path: Path, workspace: Path | None) -> BinaryIO:
    """Open the file; with a workspace, refuse one whose real path (a symlink out, even one
    swapped in after the scan) is outside it. The check is on what was opened, not before."""
    f = path.open("rb")
    if workspace is None:
        return f
    try:
        real = Path(os.readlink(f"/proc/self/fd/{f.fileno()}"))
    except OSError:
        real = path.resolve()  # no /proc: the path's real path instead
    if workspace != real and workspace not in real.parents:
        f.close()
        raise PermissionError(f"{path.name}: not inside the workspace")
    return f


def summarize_file(path: Path, workspace: Path | None = None) -> dict[str, int]:
    """Lines (newline-terminated, plus a last unterminated one), words and bytes of a UTF-8 file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = words = size = 0
    in_word = False  # the text so far ends inside a word
    last = ""
    try:
        with _open_inside(path, workspace) as f:
            while data := f.read(CHUNK):
                try:
                    text = decoder.decode(data)
                except UnicodeDecodeError as exc:
                    raise ValueError(f"not UTF-8 text: {path} (byte {size + exc.start})") from exc
                size += len(data)
                if not text:
                    continue
                lines += text.count("\n")
                parts = text.split()
                words += len(parts)
                if parts and in_word and not text[0].isspace():
                    words -= 1  # one word cut in two by the chunk boundary
                in_word = not text[-1].isspace()
                last = text[-1]
            decoder.decode(b"", final=True)
    except OSError as exc:
        raise OSError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {path} (byte {size})") from exc
    if last and last != "\n":
        lines += 1
    return {"lines": lines, "words": words, "bytes": size}
