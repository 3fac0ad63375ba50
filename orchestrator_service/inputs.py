"""Typed job inputs: what a definition declares (``[inputs.NAME]``) and the values a
submit gives, checked against it. Pure: no I/O, tested by tables.

A value reaches a step explicitly, never as command text: `shell` commands see it as the
environment variable STEPWATCH_INPUT_<NAME> (``env_of``), plug-ins as ``ctx.inputs``.
Values from the contract are JSON values (google.protobuf.Value); a string is read as the
declared type, so `--input n=3` from a shell works for an int input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["MAX_INPUTS", "InputSpec", "InputType", "Value", "env_of", "parse_specs", "resolve",
           "text_of_value"]

Value = str | int | float | bool
MAX_INPUTS = 50
MAX_VALUE_CHARS = 4096
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
SPEC_KEYS = frozenset({"type", "default", "required", "description", "choices"})
INT_RANGE = 2**63


class InputType(StrEnum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    ENUM = "enum"


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: InputType
    default: Value | None = None
    required: bool = False
    description: str = ""
    choices: tuple[str, ...] = ()


def parse_specs(raw: Any) -> tuple[tuple[InputSpec, ...], list[tuple[str, str]]]:
    """The ``[inputs]`` table as specs, and its errors as (field, message), all of them."""
    errors: list[tuple[str, str]] = []
    if raw is None:
        return (), errors
    if not isinstance(raw, dict):
        return (), [("inputs", "must be a table of [inputs.NAME] tables")]
    if len(raw) > MAX_INPUTS:
        return (), [("inputs", f"{len(raw)} inputs; at most {MAX_INPUTS}")]
    specs: list[InputSpec] = []
    env_names: dict[str, str] = {}
    for name, table in raw.items():
        where = f"inputs.{name[:64]}"
        if not NAME.fullmatch(name):
            errors.append((where, "a name is a letter or _, then letters, digits or _ (64 at most)"))
            continue
        if name.upper() in env_names:
            errors.append((where, f"is the same variable as {env_names[name.upper()]!r} "
                                  f"(STEPWATCH_INPUT_{name.upper()})"))
            continue
        env_names[name.upper()] = name
        spec = _spec(name, table, where, errors)
        if spec is not None:
            specs.append(spec)
    return tuple(specs), errors


def _spec(name: str, table: Any, where: str, errors: list[tuple[str, str]]) -> InputSpec | None:
    if not isinstance(table, dict):
        errors.append((where, "must be a table (type, default, required, description, choices)"))
        return None
    before = len(errors)
    for key in table:
        if key not in SPEC_KEYS:
            errors.append((f"{where}.{key[:64]}", "unknown key"))
    try:
        kind = InputType(table.get("type", "string"))
    except ValueError:
        errors.append((f"{where}.type", "must be one of " + ", ".join(t.value for t in InputType)))
        return None
    choices = table.get("choices", [])
    if kind == InputType.ENUM:
        if (not isinstance(choices, list) or not choices
                or not all(isinstance(c, str) and 0 < len(c) <= 200 for c in choices)):
            errors.append((f"{where}.choices", "an enum needs a list of choices (strings)"))
            choices = []
    elif "choices" in table:
        errors.append((f"{where}.choices", "only an enum input has choices"))
    description = table.get("description", "")
    if not isinstance(description, str) or len(description) > 1000:
        errors.append((f"{where}.description", "must be a string of at most 1000 characters"))
        description = ""
    required = table.get("required", False)
    if not isinstance(required, bool):
        errors.append((f"{where}.required", "must be true or false"))
        required = False
    spec = InputSpec(name, kind, None, required, description, tuple(choices))
    if "default" in table:
        value, problem = _typed(spec, table["default"])
        if problem:
            errors.append((f"{where}.default", problem))
        spec = InputSpec(name, kind, value, required, description, tuple(choices))
    return spec if len(errors) == before else None


def resolve(specs: tuple[InputSpec, ...], given: Mapping[str, Any],
            ) -> tuple[dict[str, Value], list[tuple[str, str]]]:
    """The job's inputs (given values typed, defaults where none was given), and every
    problem as (``inputs.NAME``, message): undeclared, missing, of the wrong type."""
    errors: list[tuple[str, str]] = []
    declared = {s.name: s for s in specs}
    for name in given:
        if name not in declared:
            known = ", ".join(declared) or "none"
            errors.append((f"inputs.{str(name)[:64]}", f"is not an input of this definition "
                                                       f"(its inputs: {known})"))
    out: dict[str, Value] = {}
    for spec in specs:
        if spec.name in given:
            value, problem = _typed(spec, given[spec.name])
            if problem:
                errors.append((f"inputs.{spec.name}", problem))
            elif value is not None:
                out[spec.name] = value
        elif spec.default is not None:
            out[spec.name] = spec.default
        elif spec.required:
            errors.append((f"inputs.{spec.name}", f"is required ({spec.type.value})"))
    return out, errors


def _typed(spec: InputSpec, value: Any) -> tuple[Value | None, str]:
    """``value`` as the declared type, or why it is not one."""
    kind = spec.type
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return None, f"is {len(value)} characters; at most {MAX_VALUE_CHARS}"
    if kind in (InputType.STRING, InputType.ENUM):
        if not isinstance(value, str):
            return None, f"must be a string, not {_json_type(value)}"
        if "\x00" in value:
            return None, "must not contain a NUL character"
        if kind == InputType.ENUM and value not in spec.choices:
            return None, f"must be one of {', '.join(spec.choices)} (not {value[:100]!r})"
        return value, ""
    if kind == InputType.BOOL:
        if isinstance(value, bool):
            return value, ""
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true", ""
        return None, f"must be true or false, not {_shown(value)}"
    if isinstance(value, bool):
        return None, f"must be a number ({kind.value}), not a bool"
    number: float | int
    if isinstance(value, str):
        try:
            number = int(value) if kind == InputType.INT else float(value)
        except ValueError:
            return None, f"must be {'a whole number' if kind == InputType.INT else 'a number'}, " \
                         f"not {_shown(value)}"
    elif isinstance(value, int | float):
        number = value
    else:
        return None, f"must be a number ({kind.value}), not {_json_type(value)}"
    if kind == InputType.INT:
        if isinstance(number, float) and not number.is_integer():
            return None, f"must be a whole number, not {number}"
        if not -INT_RANGE <= number < INT_RANGE:
            return None, "is out of range (64-bit)"
        return int(number), ""
    if not math.isfinite(number):
        return None, "must be a finite number"
    return float(number), ""


def _json_type(value: Any) -> str:
    return {bool: "a bool", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object", type(None): "null"}.get(type(value), "a value")


def _shown(value: Any) -> str:
    return repr(value[:100]) if isinstance(value, str) else _json_type(value)


def text_of_value(value: Value) -> str:
    """How a value reads in an environment variable: true/false, 3, 2.5, the string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def env_of(inputs: Mapping[str, Value]) -> dict[str, str]:
    """STEPWATCH_INPUT_<NAME>=value for each input: how `shell` commands receive them."""
    return {f"STEPWATCH_INPUT_{name.upper()}": text_of_value(v) for name, v in inputs.items()}
