"""Nesting of every TOML form is refused before tomllib runs, at any depth, in linear time;
what a job definition really uses passes. (Pure: parse_definition on text, no server.)"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_service.definitions import DefinitionError, parse_definition
from orchestrator_service.step_types import load_step_types
from orchestrator_service.tomldepth import MAX_DEPTH, nesting_depth

STEP_TYPES = load_step_types()
HEAD = 'name = "deep"\n[steps.s]\ntype = "shell"\ncommands = ["true"]\n'


def nested(form: str, n: int) -> str:
    """``n`` levels of one TOML form, inside an otherwise valid definition."""
    keys = ".".join(["a"] * n)
    return HEAD + {
        "array": "x = " + "[" * n + "]" * n + "\n",
        "inline": "x = " + "{a = " * n + "1" + "}" * n + "\n",
        "array-of-inline": "x = " + "[{a = " * n + "1" + "}]" * n + "\n",
        "header": f"[{keys}]\n",
        "array-of-tables": f"[[{keys}]]\n",
        "dotted": f"{keys} = 1\n",
        "quoted-dotted": ".".join(['"a.b"'] * n) + " = 1\n",
        "dotted-in-inline": "x = {" + keys + " = 1}\n",
    }[form]


FORMS = ["array", "inline", "array-of-inline", "header", "array-of-tables", "dotted",
         "quoted-dotted", "dotted-in-inline"]


@settings(max_examples=60, deadline=None)
@given(form=st.sampled_from(FORMS),
       depth=st.one_of(st.integers(MAX_DEPTH + 1, 2000), st.sampled_from([10_000, 100_000])))
def test_nesting_past_the_bound_is_refused_before_parsing(form: str, depth: int) -> None:
    text = nested(form, depth)
    started = time.perf_counter()
    with pytest.raises(DefinitionError) as err:
        parse_definition(text, STEP_TYPES)
    took = time.perf_counter() - started
    assert "levels deep" in str(err.value)
    assert took < 5, f"{form} x {depth}: {took:.1f} s"  # a bound on a thread, not a benchmark


@settings(max_examples=60, deadline=None)
@given(form=st.sampled_from(FORMS), depth=st.integers(1, 8))
def test_shallow_nesting_is_parsed_and_never_refused_for_depth(form: str, depth: int) -> None:
    text = nested(form, depth)
    assert nesting_depth(text) <= MAX_DEPTH
    try:
        parse_definition(text, STEP_TYPES)
    except DefinitionError as exc:  # an unknown top-level key, say: never the depth
        assert "levels deep" not in str(exc)


@given(depth=st.integers(1, MAX_DEPTH // 4))
def test_the_scan_never_counts_less_than_the_real_depth(depth: int) -> None:
    for form in FORMS:
        assert nesting_depth(nested(form, depth), 10**9) >= depth


def test_brackets_dots_and_quotes_inside_strings_and_comments_do_not_count() -> None:
    deep_text = "[" * 200 + "." * 200 + "{" * 200
    text = (HEAD + f'description = "{deep_text}"\n'
            f"# {deep_text}\n"
            f"x = '{deep_text}'\n"
            f'y = """\n{deep_text}\n"""\n'
            f"z = '''{deep_text}'''\n"
            f'"{deep_text}" = 1\n')
    assert nesting_depth(text) <= 4
