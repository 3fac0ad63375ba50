"""TOML text -> validated JobDefinition. Pure: no I/O beyond the text given.

Every problem is collected (not just the first) as a Violation whose ``field``
names the step and key, e.g. ``steps.summarize.max_child_failures``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .inputs import InputSpec, parse_specs, resolve
from .problems import Code, ServerError
from .statuses import Policy
from .step_types.base import OptionError, StepType
from .tomldepth import MAX_DEPTH, nesting_depth

COMMON_KEYS = {"type", "depends", "max_child_failures", "max_attempts", "timeout", "concurrency"}
TOP_KEYS = {"name", "description", "policy", "steps", "inputs"}
MAX_CONCURRENCY = 256
MAX_VIOLATIONS = 100  # reasons sent back at most (all are in the message, clipped)
MAX_ATTEMPTS = 100
MAX_TIMEOUT_S = 7 * 24 * 3600
ECHO = 200  # characters of any input an error message repeats


@dataclass(frozen=True)
class Limits:
    """What one definition may hold; checked before anything is stored (configurable)."""

    definition_bytes: int = 1 << 20
    steps: int = 10_000
    children: int = 1_000_000  # per step; also the ceiling of max_child_failures
    description: int = 4096
    name: int = 200


def clip(value: object, limit: int = ECHO) -> str:
    """An input as an error message may show it: at most ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


@dataclass(frozen=True)
class Violation:
    field: str
    description: str


class DefinitionError(ServerError):
    """A definition that cannot run; ``violations`` says every reason."""

    code = Code.INVALID_ARGUMENT

    def __init__(self, violations: list[Violation], prefix: str = "") -> None:
        self.violations = violations
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"{prefix}: {text}" if prefix else text)

    def public_message(self) -> str:
        what = "" if str(self).startswith("invalid definition file") else "invalid job definition: "
        return f"{what}{clip(str(self), 1000)}"

    def field_violations(self) -> Sequence[Violation]:
        return self.violations[:MAX_VIOLATIONS]


class InvalidInputs(DefinitionError):
    """A submit's input values that the definition's declarations refuse (every one)."""

    def public_message(self) -> str:
        return f"invalid inputs: {clip(str(self), 1000)}"


def check_inputs(definition: JobDefinition, given: Mapping[str, Any]) -> dict[str, Any]:
    """The job's inputs from the values given (typed; defaults filled), or InvalidInputs."""
    values, problems = resolve(definition.inputs, given)
    if problems:
        raise InvalidInputs([Violation(clip(where), clip(why, 500)) for where, why in problems])
    return values


@dataclass(frozen=True)
class StepDefinition:
    name: str
    type: str
    depends: tuple[str, ...] = ()
    max_child_failures: int = 0
    max_attempts: int = 1
    timeout: float | None = None
    concurrency: int = 4
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobDefinition:
    name: str
    description: str
    on_step_failure: Policy
    steps: tuple[StepDefinition, ...]
    inputs: tuple[InputSpec, ...] = ()


def parse_definition(text: str, step_types: Mapping[str, StepType],
                     limits: Limits = Limits()) -> JobDefinition:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.definition_bytes:
        raise DefinitionError([Violation(
            "definition_toml", f"is {size} bytes; at most {limits.definition_bytes} are allowed")])
    if nesting_depth(text) > MAX_DEPTH:  # before tomllib, which is quadratic on deep keys
        raise DefinitionError([Violation(
            "definition_toml", f"nests more than {MAX_DEPTH} levels deep (arrays, inline tables, "
            "dotted keys and table headers all count); a job definition needs a few")])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError([Violation("definition_toml",
                                         f"TOML syntax error: {clip(str(exc))}")]) from exc
    except RecursionError:
        raise DefinitionError([Violation("definition_toml", "nested too deeply")]) from None
    nul = _nul_paths(data, "")
    if nul:  # no database stores them as text (PostgreSQL refuses), and no command needs one
        raise DefinitionError([Violation(clip(path), "must not contain a NUL character (\\u0000)")
                               for path in nul[:20]])
    return build_definition(data, step_types, limits)


def _nul_paths(value: Any, path: str) -> list[str]:
    """Where a string (key or value) holds a NUL character; a walk with a stack of its own,
    so no input depth reaches Python's recursion limit."""
    out: list[str] = []
    todo: list[tuple[Any, str]] = [(value, path)]
    while todo:
        item, where = todo.pop()
        if isinstance(item, str):
            if "\x00" in item:
                out.append(where or "definition_toml")
        elif isinstance(item, dict):
            for k, v in item.items():
                here = f"{where}.{k}" if where else str(k)
                if "\x00" in k:
                    out.append(here)
                else:
                    todo.append((v, here))
        elif isinstance(item, list):
            todo += [(v, f"{where}[{i}]") for i, v in enumerate(item)]
    return sorted(out)


def build_definition(data: Mapping[str, Any], step_types: Mapping[str, StepType],
                     limits: Limits = Limits()) -> JobDefinition:
    errors: list[Violation] = []
    for key in data:
        if key not in TOP_KEYS:
            errors.append(Violation(clip(key), "unknown top-level key"))

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append(Violation("name", "is required: a non-empty string"))
        name = ""
    elif len(name) > limits.name:
        errors.append(Violation("name", f"is {len(name)} characters; at most {limits.name}"))
    description = data.get("description", "")
    if not isinstance(description, str):
        errors.append(Violation("description", "must be a string"))
        description = ""
    elif len(description) > limits.description:
        errors.append(Violation("description", f"is {len(description)} characters; at most "
                                               f"{limits.description}"))
    policy = _policy(data.get("policy", {}), errors)
    inputs, problems = parse_specs(data.get("inputs"))
    errors += [Violation(clip(where), clip(why, 500)) for where, why in problems]

    raw_steps = data.get("steps")
    steps: list[StepDefinition] = []
    if not isinstance(raw_steps, dict) or not raw_steps:
        errors.append(Violation("steps", "at least one [steps.NAME] table is required"))
    elif len(raw_steps) > limits.steps:
        errors.append(Violation("steps", f"{len(raw_steps)} steps; at most {limits.steps}"))
    else:
        for step_name, raw in raw_steps.items():
            step = _step(step_name, raw, step_types, errors, limits)
            if step is not None:
                steps.append(step)
        # Every table's depends, valid step or not: all of a file's errors in one round.
        _check_depends(_depends_of(raw_steps), errors)
    if errors:
        raise DefinitionError(errors)
    return JobDefinition(name=name, description=description, on_step_failure=policy,
                         steps=tuple(steps), inputs=inputs)


def _policy(raw: Any, errors: list[Violation]) -> Policy:
    if not isinstance(raw, dict):
        errors.append(Violation("policy", "must be a table"))
        return Policy.STOP
    for key in raw:
        if key != "on_step_failure":
            errors.append(Violation(f"policy.{key}", "unknown key"))
    value = raw.get("on_step_failure", "stop")
    try:
        return Policy(value)
    except ValueError:
        errors.append(Violation("policy.on_step_failure", 'must be "stop" or "continue"'))
        return Policy.STOP


def _step(name: str, raw: Any, step_types: Mapping[str, StepType],
          errors: list[Violation], limits: Limits) -> StepDefinition | None:
    where = f"steps.{clip(name)}"
    if len(name) > limits.name or not name.strip():
        errors.append(Violation(where, f"a step name must be 1 to {limits.name} characters"))
        return None
    if not isinstance(raw, dict):
        errors.append(Violation(where, "must be a table"))
        return None
    before = len(errors)
    type_name = raw.get("type")
    step_type = step_types.get(type_name) if isinstance(type_name, str) else None
    if step_type is None:
        known = ", ".join(sorted(step_types))
        errors.append(Violation(f"{where}.type",
                                f"unknown step type {clip(repr(type_name), 100)} (known: {known})"))

    depends = raw.get("depends", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        errors.append(Violation(f"{where}.depends", "must be a list of step names"))
        depends = []
    max_child_failures = _int(raw, "max_child_failures", 0, 0, limits.children, where, errors)
    max_attempts = _int(raw, "max_attempts", 1, 1, MAX_ATTEMPTS, where, errors)
    concurrency = _int(raw, "concurrency", 4, 1, MAX_CONCURRENCY, where, errors)
    timeout = raw.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float)
        or not math.isfinite(timeout) or timeout <= 0 or timeout > MAX_TIMEOUT_S
    ):
        errors.append(Violation(f"{where}.timeout",
                                f"must be a positive number of seconds, at most {MAX_TIMEOUT_S}"))

    options = {k: v for k, v in raw.items() if k not in COMMON_KEYS}
    if step_type is not None:
        try:
            options = step_type.validate(options)
        except OptionError as exc:
            errors.append(Violation(f"{where}.{clip(exc.key)}", clip(exc.message, 500)))
    if len(errors) > before:
        return None
    return StepDefinition(
        name=name, type=str(type_name), depends=tuple(depends), max_child_failures=max_child_failures,
        max_attempts=max_attempts, timeout=float(timeout) if timeout is not None else None,
        concurrency=concurrency, options=options,
    )


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int,
         where: str, errors: list[Violation]) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append(Violation(f"{where}.{key}", f"must be a whole number from {low} to {high}"))
        return default
    return value


def _depends_of(raw_steps: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each step table's ``depends`` as written, where it is a list of names."""
    out: dict[str, list[str]] = {}
    for name, raw in raw_steps.items():
        deps = raw.get("depends", []) if isinstance(raw, dict) else []
        out[name] = list(deps) if isinstance(deps, list) and all(
            isinstance(d, str) for d in deps) else []
    return out


def _check_depends(graph: Mapping[str, list[str]], errors: list[Violation]) -> None:
    for name, deps in graph.items():
        for dep in deps:
            if dep not in graph:
                errors.append(Violation(f"steps.{clip(name)}.depends", f"unknown step {clip(repr(dep))}"))
            elif dep == name:
                errors.append(Violation(f"steps.{clip(name)}.depends", "a step cannot depend on itself"))
    cycle = find_cycle({n: [d for d in deps if d in graph and d != n] for n, deps in graph.items()})
    if cycle:
        path = " -> ".join(cycle) if len(cycle) <= 12 else " -> ".join(
            [*cycle[:5], f"… ({len(cycle) - 10} more) …", *cycle[-5:]])
        errors.append(Violation(f"steps.{clip(cycle[0])}.depends", f"dependency cycle: {clip(path, 1000)}"))


def find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle in the depends graph as a closed path of names, or None.

    Iterative depth-first search: a chain of any length costs no recursion.
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in graph:
        if root in state:
            continue
        path: list[str] = [root]
        edges: list[Iterator[str]] = [iter(graph.get(root, []))]
        state[root] = 1
        while path:
            nxt = next(edges[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                edges.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                edges.append(iter(graph.get(nxt, [])))
    return None
