"""summarize: one child per document; stores lines, words and bytes on it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from .base import Child, DocumentPut, StepContext, StepType


class Summarize(StepType):
    name = "summarize"

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        return [Child(key=doc.path) for doc in await ctx.documents()]

    async def run_child(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        stats = await asyncio.to_thread(summarize_file, ctx.workspace / child.key)
        return [DocumentPut(child.key, attrs=stats)]


def summarize_file(path: Path) -> dict[str, int]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OSError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {path} (byte {exc.start})") from exc
    return {"lines": len(text.splitlines()), "words": len(text.split()), "bytes": len(data)}
