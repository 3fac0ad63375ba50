"""Run with inputs: a form built from a definition's declared inputs (InputDeclaration).

The form only collects text and choices; the server types and checks every value (one
INVALID_ARGUMENT naming each bad input, shown under the form). ``form_values`` is pure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from google.protobuf import json_format
from nicegui import ui

from stepwatch.errors import StepwatchError
from stepwatch.v1 import orchestrator_pb2 as pb

__all__ = ["ask_inputs", "form_values"]

Submit = Callable[[dict[str, Any]], Awaitable[None]]


def default_of(decl: pb.InputDeclaration) -> Any:
    return json_format.MessageToDict(decl.default_value) if decl.HasField("default_value") else None


def form_values(decls: list[pb.InputDeclaration], raw: Mapping[str, Any]) -> dict[str, Any]:
    """What the form sends: each field that holds a value (an empty field sends nothing,
    so the declared default applies, or the server says the input is required)."""
    out: dict[str, Any] = {}
    for decl in decls:
        value = raw.get(decl.name)
        if value is None or value == "":
            continue
        if decl.type == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[decl.name] = value
    return out


def ask_inputs(info: pb.JobDefinitionInfo, submit: Submit) -> None:
    """A dialog with one field per declared input; Run sends them."""
    fields: dict[str, Any] = {}
    with ui.dialog() as dialog, ui.card().classes("w-full max-w-lg").mark("inputs-dialog"):
        ui.label(f"Run {info.name}").classes("text-h6")
        for decl in info.inputs:
            label = decl.name + (" *" if decl.required and not decl.HasField("default_value")
                                 else "")
            default = default_of(decl)
            if decl.type == "bool":
                field: Any = ui.switch(label, value=bool(default))
            elif decl.type == "enum":
                field = ui.select(list(decl.choices), value=default, label=label)
            elif decl.type in ("int", "float"):
                field = ui.number(label, value=default, step=1 if decl.type == "int" else None)
            else:
                field = ui.input(label, value=default or "")
            field.classes("w-full").mark(f"input-{decl.name}")
            if decl.description:
                field.props(f'hint="{decl.description}"' if '"' not in decl.description else "")
            fields[decl.name] = field
        errors = ui.label("").classes("sw-failure text-sm whitespace-pre-line").mark("input-errors")

        async def go() -> None:
            values = form_values(list(info.inputs), {n: f.value for n, f in fields.items()})
            try:
                await submit(values)
                dialog.close()
            except StepwatchError as err:
                errors.set_text("\n".join(f"{v.field}: {v.description}" for v in err.violations)
                                or err.message)

        with ui.row():
            ui.button("Run", on_click=go).mark("inputs-run")
            ui.button("Cancel", on_click=dialog.close).props("flat")
    dialog.open()
