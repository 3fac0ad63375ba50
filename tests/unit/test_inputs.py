"""Typed inputs as tables: declarations, values given, defaults, every problem at once."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from orchestrator_service.inputs import InputSpec, InputType, env_of, parse_specs, resolve
from stepwatch.v1 import orchestrator_pb2 as pb
from ui_service.pages.run_dialog import form_values

SPECS, _ = parse_specs({
    "s": {"type": "string", "required": True}, "n": {"type": "int", "default": 3},
    "x": {"type": "float"}, "b": {"type": "bool", "default": False},
    "e": {"type": "enum", "choices": ["a", "b"]}})


@pytest.mark.parametrize(("given", "values", "bad"), [
    ({"s": "hi"}, {"s": "hi", "n": 3, "b": False}, set()),
    ({"s": "", "n": "7", "x": "2.5", "b": "TRUE", "e": "b"},
     {"s": "", "n": 7, "x": 2.5, "b": True, "e": "b"}, set()),
    ({"s": "hi", "n": 7.0, "x": 1}, {"s": "hi", "n": 7, "x": 1.0, "b": False}, set()),
    ({}, None, {"inputs.s"}),
    ({"s": 1, "n": 1.5, "x": "nan", "b": "yes", "e": "c", "zz": 1}, None,
     {"inputs.s", "inputs.n", "inputs.x", "inputs.b", "inputs.e", "inputs.zz"}),
    ({"s": "a\x00b", "n": True, "x": [1]}, None, {"inputs.s", "inputs.n", "inputs.x"}),
    ({"s": "x" * 5000, "n": 2**63}, None, {"inputs.s", "inputs.n"}),
])
def test_resolve(given: dict[str, object], values: dict[str, object] | None,
                 bad: set[str]) -> None:
    got, problems = resolve(SPECS, given)
    assert {where for where, _ in problems} == bad
    if values is not None:
        assert got == values


@pytest.mark.parametrize(("raw", "fields"), [
    ({"n": {"type": "int", "default": "x"}}, {"inputs.n.default"}),
    ({"e": {"type": "enum"}}, {"inputs.e.choices"}),
    ({"s": {"type": "string", "choices": ["a"]}}, {"inputs.s.choices"}),
    ({"1bad": {}}, {"inputs.1bad"}),
    ({"a": {"type": "x", "extra": 1}}, {"inputs.a.type", "inputs.a.extra"}),
    ({"ab": {}, "AB": {}}, {"inputs.AB"}),
    ({"r": {"required": "yes"}}, {"inputs.r.required"}),
    ([1], {"inputs"}),
])
def test_declarations_are_checked_all_at_once(raw: object, fields: set[str]) -> None:
    _, problems = parse_specs(raw)
    assert {where for where, _ in problems} == fields


def test_environment_names_and_texts() -> None:
    assert env_of({"target": "$(id); x", "n": 3, "ok": True, "r": 0.5}) == {
        "STEPWATCH_INPUT_TARGET": "$(id); x", "STEPWATCH_INPUT_N": "3",
        "STEPWATCH_INPUT_OK": "true", "STEPWATCH_INPUT_R": "0.5"}
    assert InputSpec("a", InputType.STRING).required is False


def test_the_run_form_sends_what_was_filled() -> None:
    decls = [pb.InputDeclaration(name="s", type="string"),
             pb.InputDeclaration(name="d", type="string",
                                 default_value=struct_pb2.Value(string_value="x")),
             pb.InputDeclaration(name="n", type="int"), pb.InputDeclaration(name="b", type="bool")]
    assert form_values(decls, {"s": "", "d": "", "n": 4.0, "b": False}) == {"n": 4, "b": False}
    assert form_values(decls, {"s": None, "d": "y", "n": None}) == {"d": "y"}
