"""Plug-in step types come from the `stepwatch.step_types` entry points."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import EntryPoint

import pytest

from orchestrator_service import step_types
from orchestrator_service.definitions import parse_definition
from orchestrator_service.step_types import Child, OptionError, StepContext, StepType


class WordCount(StepType):
    name = "word_count"

    def validate(self, options):  # type: ignore[no-untyped-def]
        if "min" in options and not isinstance(options["min"], int):
            raise OptionError("min", "must be a whole number")
        return {"min": options.get("min", 1)}

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        return []


def make_word_count() -> StepType:
    return WordCount()


class Shadow(StepType):
    name = "shell"


NOT_A_STEP_TYPE = object()


def fake_entry_points(**targets: str):  # type: ignore[no-untyped-def]
    eps = [EntryPoint(name, target, step_types.ENTRY_POINT_GROUP) for name, target in targets.items()]
    return lambda group: [ep for ep in eps if ep.group == group]


@pytest.mark.parametrize("target", [f"{__name__}:WordCount", f"{__name__}:make_word_count"])
def test_a_class_or_a_factory_registers(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    monkeypatch.setattr(step_types, "entry_points", fake_entry_points(word_count=target))
    types = step_types.load_step_types()
    assert isinstance(types["word_count"], WordCount)
    assert {"scan_files", "summarize", "filter_tags", "shell"} <= set(types)
    d = parse_definition('name = "x"\n[steps.w]\ntype = "word_count"\nmin = 3\n', types)
    assert d.steps[0].options == {"min": 3}


def test_a_plugin_cannot_replace_a_builtin_or_be_something_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(step_types, "entry_points", fake_entry_points(
        shell=f"{__name__}:Shadow", junk=f"{__name__}:NOT_A_STEP_TYPE"))
    types = step_types.load_step_types()
    assert type(types["shell"]).__module__ == "orchestrator_service.step_types.shell"
    assert "junk" not in types
