"""summarize: one child per document; stores lines, words and bytes on it."""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from ..beneath import Workspace, open_beneath_stat
from .base import Child, DocumentPut, StepContext, StepType


class Summarize(StepType):
    name = "summarize"
    sync_children = True

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        return [Child(key=path) for path in await ctx.document_paths()]

    def run_child_sync(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        stats = summarize_beneath(ctx.beneath, child.key, ctx.allow_hardlinks)
        return [DocumentPut(child.key, attrs=stats)]


CHUNK = 1 << 20  # a file is read 1 MiB at a time: a 1 GB file costs 1 MiB of memory


def summarize_beneath(workspace: Workspace, rel: str, allow_hardlinks: bool = False,
                      ) -> dict[str, int]:
    """Counts of the file ``rel`` beneath ``workspace``, opened without following a symlink
    anywhere on its path (beneath.py); errors name ``rel``, not where the workspace is."""
    fd, st = open_beneath_stat(workspace, rel, os.O_RDONLY, allow_hardlinks)
    try:
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"cannot read {rel}: not a regular file")
        return summarize_chunks(_chunks(fd, st.st_size), rel)
    finally:
        os.close(fd)


def _chunks(fd: int, size: int) -> Iterator[bytes]:
    """The file's bytes, read straight from the descriptor: the first read sized to the
    file, then CHUNK at a time. A small file costs one read: asked for one byte more than
    fstat said, it returned just what fstat said, so nothing followed (a file that grew
    since is read on to its end)."""
    want = min(CHUNK, size + 1)
    while data := os.read(fd, want):
        yield data
        if len(data) == size < want:
            return
        want = CHUNK


def summarize_file(path: Path) -> dict[str, int]:
    with path.open("rb") as f:
        return summarize_stream(f, str(path))


def summarize_stream(f: BinaryIO, name: str) -> dict[str, int]:
    return summarize_chunks(iter(lambda: f.read(CHUNK), b""), name)


def summarize_chunks(chunks: Iterable[bytes], name: str) -> dict[str, int]:
    """Lines (newline-terminated, plus a last unterminated one), words and bytes of UTF-8 text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = words = size = 0
    in_word = False  # the text so far ends inside a word
    last = ""
    try:
        for data in chunks:
            try:
                text = decoder.decode(data)
            except UnicodeDecodeError as exc:
                raise ValueError(f"not UTF-8 text: {name} (byte {size + exc.start})") from exc
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
        raise OSError(f"cannot read {name}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {name} (byte {size})") from exc
    if last and last != "\n":
        lines += 1
    return {"lines": lines, "words": words, "bytes": size}
