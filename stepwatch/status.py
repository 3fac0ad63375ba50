"""The one presentation table for every status value the server sends (and the unknown case).

For each value of StepStatus, JobStatus and ChildStatus: its label, its tone (what
kind of outcome it is, from which the page derives colour and icon and the CLI its
style), whether it is terminal and whether a cancel applies. Readers show the
server's value through this table and decide nothing from it. A value this table
does not know (a newer server) is "Unknown (N)" with the unknown tone, never a
neighbour. Adding a status value touches the proto and this module only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from google.protobuf.descriptor import EnumDescriptor

from stepwatch.v1 import orchestrator_pb2 as pb

__all__ = ["CHILD", "JOB", "REASON", "STEP", "Presentation", "Tone", "failure_text", "label",
           "present",
           "value_name"]

STEP = pb.StepStatus.DESCRIPTOR
JOB = pb.JobStatus.DESCRIPTOR
REASON = pb.FailureReason.DESCRIPTOR
CHILD = pb.ChildStatus.DESCRIPTOR


class Tone(StrEnum):
    """What kind of outcome a value is: readers map tones to colours, icons, styles."""

    WAITING = "waiting"
    ACTIVE = "active"
    SUCCESS = "success"
    PARTIAL = "partial"  # done, with failures the policy tolerated
    FAILURE = "failure"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Presentation:
    label: str
    tone: Tone
    terminal: bool
    cancellable: bool = False


def _p(label_: str, tone: Tone, *, terminal: bool, cancellable: bool = False) -> Presentation:
    return Presentation(label_, tone, terminal, cancellable)


TABLE: dict[EnumDescriptor, dict[int, Presentation]] = {
    STEP: {
        pb.STEP_STATUS_PENDING: _p("Pending", Tone.WAITING, terminal=False),
        pb.STEP_STATUS_RUNNING: _p("Running", Tone.ACTIVE, terminal=False),
        pb.STEP_STATUS_COMPLETED: _p("Completed", Tone.SUCCESS, terminal=True),
        pb.STEP_STATUS_FAILED: _p("Failed", Tone.FAILURE, terminal=True),
        pb.STEP_STATUS_SKIPPED: _p("Skipped", Tone.SKIPPED, terminal=True),
        pb.STEP_STATUS_CANCELLED: _p("Cancelled", Tone.CANCELLED, terminal=True),
    },
    JOB: {
        pb.JOB_STATUS_PENDING: _p("Pending", Tone.WAITING, terminal=False, cancellable=True),
        pb.JOB_STATUS_RUNNING: _p("Running", Tone.ACTIVE, terminal=False, cancellable=True),
        pb.JOB_STATUS_COMPLETED: _p("Completed", Tone.SUCCESS, terminal=True),
        pb.JOB_STATUS_COMPLETED_WITH_FAILURES: _p("Completed with failures", Tone.PARTIAL,
                                                  terminal=True),
        pb.JOB_STATUS_FAILED: _p("Failed", Tone.FAILURE, terminal=True),
        pb.JOB_STATUS_CANCELLED: _p("Cancelled", Tone.CANCELLED, terminal=True),
    },
    CHILD: {
        pb.CHILD_STATUS_PENDING: _p("Pending", Tone.WAITING, terminal=False),
        pb.CHILD_STATUS_RUNNING: _p("Running", Tone.ACTIVE, terminal=False),
        pb.CHILD_STATUS_COMPLETED: _p("Completed", Tone.SUCCESS, terminal=True),
        pb.CHILD_STATUS_FAILED: _p("Failed", Tone.FAILURE, terminal=True),
        pb.CHILD_STATUS_CANCELLED: _p("Cancelled", Tone.CANCELLED, terminal=True),
    },
}


def present(enum: EnumDescriptor, number: int) -> Presentation:
    """How to show a value: the table's entry, or "Unknown (N)" (0 included: never sent)."""
    known = TABLE.get(enum, {}).get(number)
    return known or Presentation(f"Unknown ({number})", Tone.UNKNOWN, terminal=False)


def value_name(enum: EnumDescriptor, number: int) -> str | None:
    """The enum value's full name (e.g. STEP_STATUS_FAILED), or None when not known here."""
    value = enum.values_by_number.get(number)
    return None if value is None or number == 0 else value.name


def label(enum: EnumDescriptor, number: int) -> str:
    """"Completed with failures" for a status; for other enums (FailureReason) from the name."""
    if enum in TABLE:
        return present(enum, number).label
    name = value_name(enum, number)
    if name is None:
        return f"Unknown ({number})"
    prefix = enum.values[0].name.removesuffix("UNSPECIFIED")
    return name.removeprefix(prefix).replace("_", " ").capitalize()


def failure_text(failure: pb.Failure) -> str:
    """"Job stopped: step 'x' failed": the reason's label, then the message, the label not
    said twice when a message (from an older server, or stored before) begins with it."""
    head = label(REASON, failure.reason)
    message = failure.message
    if message.lower().startswith(head.lower()):
        message = message[len(head):].lstrip(" :")
    return f"{head}: {message}" if message else head


# Kept for readers that ask by set: derived from the table, not listed again.
TERMINAL_JOB = frozenset(n for n, p in TABLE[JOB].items() if p.terminal)
CANCELLABLE_JOB = frozenset(n for n, p in TABLE[JOB].items() if p.cancellable)
TERMINAL_STEP = frozenset(n for n, p in TABLE[STEP].items() if p.terminal)
