"""The one table: a status enum value -> label, colour, icon. Nothing else in the UI
decides how a status looks, and nothing decides a status at all.

A value not in the table (a newer server) renders as "Unknown (N)" in neutral grey,
never as a neighbouring value.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import EnumDescriptor

from stepwatch.v1 import orchestrator_pb2 as pb

STEP = pb.StepStatus.DESCRIPTOR
JOB = pb.JobStatus.DESCRIPTOR
CHILD = pb.ChildStatus.DESCRIPTOR

GREY = "#757575"
UNKNOWN_ICON = "help_outline"


@dataclass(frozen=True)
class Look:
    label: str
    colour: str  # CSS colour of the badge background
    icon: str  # Material icon name
    animated: bool = False


TABLE: dict[EnumDescriptor, dict[int, Look]] = {
    STEP: {
        pb.STEP_STATUS_UNSPECIFIED: Look("Unknown (0)", GREY, UNKNOWN_ICON),
        pb.STEP_STATUS_PENDING: Look("Pending", "#9e9e9e", "schedule"),
        pb.STEP_STATUS_RUNNING: Look("Running", "#1976d2", "autorenew", animated=True),
        pb.STEP_STATUS_COMPLETED: Look("Completed", "#2e7d32", "check_circle"),
        pb.STEP_STATUS_FAILED: Look("Failed", "#d32f2f", "error"),
        pb.STEP_STATUS_SKIPPED: Look("Skipped", "#6a1b9a", "redo"),
        pb.STEP_STATUS_CANCELLED: Look("Cancelled", "#4e342e", "block"),
    },
    JOB: {
        pb.JOB_STATUS_UNSPECIFIED: Look("Unknown (0)", GREY, UNKNOWN_ICON),
        pb.JOB_STATUS_PENDING: Look("Pending", "#9e9e9e", "schedule"),
        pb.JOB_STATUS_RUNNING: Look("Running", "#1976d2", "autorenew", animated=True),
        pb.JOB_STATUS_COMPLETED: Look("Completed", "#2e7d32", "check_circle"),
        pb.JOB_STATUS_COMPLETED_WITH_FAILURES: Look("Completed with failures", "#ff8f00", "warning"),
        pb.JOB_STATUS_FAILED: Look("Failed", "#d32f2f", "error"),
        pb.JOB_STATUS_CANCELLED: Look("Cancelled", "#4e342e", "block"),
    },
    CHILD: {
        pb.CHILD_STATUS_UNSPECIFIED: Look("Unknown (0)", GREY, UNKNOWN_ICON),
        pb.CHILD_STATUS_PENDING: Look("Pending", "#9e9e9e", "schedule"),
        pb.CHILD_STATUS_RUNNING: Look("Running", "#1976d2", "autorenew", animated=True),
        pb.CHILD_STATUS_COMPLETED: Look("Completed", "#2e7d32", "check_circle"),
        pb.CHILD_STATUS_FAILED: Look("Failed", "#d32f2f", "error"),
        pb.CHILD_STATUS_CANCELLED: Look("Cancelled", "#4e342e", "block"),
    },
}


def look(enum: EnumDescriptor, number: int) -> Look:
    return TABLE[enum].get(number) or Look(f"Unknown ({number})", GREY, UNKNOWN_ICON)


def value_name(enum: EnumDescriptor, number: int) -> str:
    """The name for data-status: the enum value's name, or UNKNOWN_<N>."""
    value = enum.values_by_number.get(number)
    return value.name if value is not None else f"UNKNOWN_{number}"
