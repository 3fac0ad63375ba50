"""How a status looks on the page: colour and icon by the tone that stepwatch.status (the
one presentation table) gives each value. Nothing else in the UI decides how a status
looks, and nothing decides a status at all.

A value the table does not know (a newer server) renders as "Unknown (N)" in neutral
grey, never as a neighbouring value.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import EnumDescriptor

from stepwatch.status import CHILD, JOB, STEP, TABLE, Tone, present

__all__ = ["CHILD", "GREY", "JOB", "STEP", "TABLE", "Look", "look", "value_name"]

GREY = "#757575"
UNKNOWN_ICON = "help_outline"


@dataclass(frozen=True)
class Look:
    label: str
    colour: str  # CSS colour of the badge background
    icon: str  # Material icon name
    animated: bool = False


# Colour and icon by tone: the page's one decision, made from the status table's tone.
TONE_LOOK: dict[Tone, tuple[str, str]] = {
    Tone.WAITING: ("#757575", "schedule"),
    Tone.ACTIVE: ("#1565c0", "autorenew"),
    Tone.SUCCESS: ("#2e7d32", "check_circle"),
    Tone.PARTIAL: ("#b45309", "warning"),
    Tone.FAILURE: ("#d32f2f", "error"),
    Tone.SKIPPED: ("#6a1b9a", "redo"),
    Tone.CANCELLED: ("#4e342e", "block"),
    Tone.UNKNOWN: (GREY, UNKNOWN_ICON),
}


def look(enum: EnumDescriptor, number: int) -> Look:
    p = present(enum, number)
    colour, icon = TONE_LOOK[p.tone]
    return Look(p.label, colour, icon, animated=p.tone == Tone.ACTIVE)


def value_name(enum: EnumDescriptor, number: int) -> str:
    """The name for data-status: the enum value's name, or UNKNOWN_<N>."""
    value = enum.values_by_number.get(number)
    return value.name if value is not None else f"UNKNOWN_{number}"
