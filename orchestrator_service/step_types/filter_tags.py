"""filter_tags: one child per document carrying any of ``tags``; none is an init failure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import Child, DocumentPut, StepContext, StepType, check_known, string_list


class FilterTags(StepType):
    name = "filter_tags"
    sync_children = True

    def validate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        check_known(options, {"tags"}, self.name)
        return {"tags": string_list(options, "tags", required=True)}

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        tags = list(ctx.options["tags"])
        matches = await ctx.documents(tags)
        if not matches:
            # The origin case: this message must reach the reader verbatim.
            raise LookupError(f"no documents found matching tags: {tags}")
        return [Child(key=doc.path) for doc in matches]

    def run_child_sync(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut]:
        return [DocumentPut(child.key)]
