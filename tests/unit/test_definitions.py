import pytest

from orchestrator_service.definitions import DefinitionError, find_cycle, parse_definition
from orchestrator_service.statuses import Policy
from orchestrator_service.step_types import builtin_step_types

TYPES = builtin_step_types()

EXAMPLE = """
name = "codebase_assess"
description = "Assess this repository"
[policy]
on_step_failure = "continue"
[steps.import_files]
type = "scan_files"
root = "."
include = ["**/*.py", "**/*.md"]
[steps.summarize]
type = "summarize"
depends = ["import_files"]
max_child_failures = 5
[steps.architecture_notes]
type = "filter_tags"
depends = ["summarize"]
tags = ["architecture"]
"""


def test_the_issue_example_parses_in_file_order() -> None:
    d = parse_definition(EXAMPLE, TYPES)
    assert d.name == "codebase_assess"
    assert d.on_step_failure is Policy.CONTINUE
    assert [s.name for s in d.steps] == ["import_files", "summarize", "architecture_notes"]
    summarize = d.steps[1]
    assert (summarize.depends, summarize.max_child_failures, summarize.max_attempts,
            summarize.concurrency, summarize.timeout) == (("import_files",), 5, 1, 4, None)
    assert d.steps[2].options == {"tags": ("architecture",)}


def test_policy_defaults_to_stop() -> None:
    d = parse_definition('name = "x"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n', TYPES)
    assert d.on_step_failure is Policy.STOP


def step(body: str, name: str = "a") -> str:
    return f'name = "x"\n[steps.{name}]\n{body}\n'


@pytest.mark.parametrize(("text", "field", "words"), [
    ("name = ", "definition_toml", "TOML syntax error"),
    ('name = "x"\n', "steps", "at least one"),
    (step('type = "shell"\ncommands = ["true"]').replace('name = "x"', ""), "name", "required"),
    (step('type = "nope"'), "steps.a.type", "unknown step type 'nope'"),
    (step('type = "shell"'), "steps.a.commands", "required"),
    (step('type = "shell"\ncommands = ["true"]\ncolour = "red"'), "steps.a.colour", "unknown key"),
    (step('type = "shell"\ncommands = [1]'), "steps.a.commands", "list of non-empty strings"),
    (step('type = "shell"\ncommands = ["true"]\nmax_child_failures = -1'),
     "steps.a.max_child_failures", "whole number"),
    (step('type = "shell"\ncommands = ["true"]\nmax_attempts = 0'), "steps.a.max_attempts", "from 1"),
    (step('type = "shell"\ncommands = ["true"]\nconcurrency = 0'), "steps.a.concurrency", "from 1"),
    (step('type = "shell"\ncommands = ["true"]\ntimeout = -2'), "steps.a.timeout", "positive"),
    (step('type = "shell"\ncommands = ["true"]\ntimeout = "soon"'), "steps.a.timeout", "positive"),
    (step('type = "shell"\ncommands = ["true"]\ndepends = ["ghost"]'), "steps.a.depends",
     "unknown step 'ghost'"),
    (step('type = "shell"\ncommands = ["true"]\ndepends = ["a"]'), "steps.a.depends", "itself"),
    (step('type = "filter_tags"'), "steps.a.tags", "required"),
    (step('type = "scan_files"\ninclude = []'), "steps.a.include", "must not be empty"),
    ('name = "x"\n[policy]\non_step_failure = "maybe"\n[steps.a]\ntype = "summarize"\n',
     "policy.on_step_failure", '"stop" or "continue"'),
    ('name = "x"\nowner = "me"\n[steps.a]\ntype = "summarize"\n', "owner", "unknown top-level key"),
])
def test_bad_definitions_name_the_step_and_key(text: str, field: str, words: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition(text, TYPES)
    matching = [v for v in info.value.violations if v.field == field]
    assert matching, info.value.violations
    assert words in matching[0].description


def test_cycles_are_reported_with_their_path() -> None:
    text = ('name = "x"\n'
            '[steps.a]\ntype = "summarize"\ndepends = ["c"]\n'
            '[steps.b]\ntype = "summarize"\ndepends = ["a"]\n'
            '[steps.c]\ntype = "summarize"\ndepends = ["b"]\n')
    with pytest.raises(DefinitionError) as info:
        parse_definition(text, TYPES)
    (v,) = info.value.violations
    assert v.field == "steps.a.depends"
    assert v.description == "dependency cycle: a -> c -> b -> a"


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = step('type = "nope"') + '[steps.b]\ntype = "shell"\n'
    with pytest.raises(DefinitionError) as info:
        parse_definition(text, TYPES)
    assert {v.field for v in info.value.violations} == {"steps.a.type", "steps.b.commands"}


def test_dependency_errors_come_in_the_same_round_as_the_others() -> None:
    """A step that is wrong in other ways still has its depends checked: one round."""
    text = ('name = "x"\n[steps.a]\ntype = "nope"\ndepends = ["zzz"]\n'
            '[steps.b]\ntype = "shell"\ncommands = ["true"]\ndepends = ["c"]\nmax_attempts = 0\n'
            '[steps.c]\ntype = "shell"\ncommands = ["true"]\ndepends = ["b"]\n')
    with pytest.raises(DefinitionError) as info:
        parse_definition(text, TYPES)
    got = [(v.field, v.description.split(":")[0]) for v in info.value.violations]
    assert sorted(got) == sorted([
        ("steps.a.type", "unknown step type 'nope' (known"),
        ("steps.b.max_attempts", "must be a whole number from 1 to 100"),
        ("steps.a.depends", "unknown step 'zzz'"),
        ("steps.b.depends", "dependency cycle"),
    ])
    assert len(got) == len(set(got))  # each once


@pytest.mark.parametrize(("graph", "has_cycle"), [
    ({"a": [], "b": ["a"]}, False),
    ({"a": ["b"], "b": ["a"]}, True),
    ({"a": ["b"], "b": ["c"], "c": []}, False),
    ({"a": ["b", "c"], "b": ["c"], "c": ["a"]}, True),
])
def test_find_cycle(graph: dict[str, list[str]], has_cycle: bool) -> None:
    cycle = find_cycle(graph)
    assert (cycle is not None) == has_cycle
    if cycle:
        assert cycle[0] == cycle[-1]
        assert all(b in graph[a] for a, b in zip(cycle, cycle[1:], strict=False))


def test_long_chains_and_cycles_need_no_recursion() -> None:
    n = 5000
    chain = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(n)}
    assert find_cycle(chain) is None
    reversed_chain = {f"s{i}": [f"s{i + 1}"] if i < n - 1 else [] for i in range(n)}
    assert find_cycle(reversed_chain) is None
    ring = {f"s{i}": [f"s{(i + 1) % 1200}"] for i in range(1200)}
    cycle = find_cycle(ring)
    assert cycle is not None and len(cycle) == 1201 and cycle[0] == cycle[-1]
    toml = 'name = "chain"\n' + "".join(
        f'[steps.s{i}]\ntype = "shell"\ncommands = ["true"]\n'
        + (f'depends = ["s{i - 1}"]\n' if i else "") for i in range(n))
    assert len(parse_definition(toml, builtin_step_types()).steps) == n
