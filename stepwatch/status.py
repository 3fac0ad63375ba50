"""Human labels for the server's enum values. Unknown values stay unknown: "Unknown (9)"."""

from __future__ import annotations

from google.protobuf.descriptor import EnumDescriptor

from stepwatch.v1 import orchestrator_pb2 as pb

STEP = pb.StepStatus.DESCRIPTOR
JOB = pb.JobStatus.DESCRIPTOR
REASON = pb.FailureReason.DESCRIPTOR
CHILD = pb.ChildStatus.DESCRIPTOR

# Which job statuses end a job, and which a cancel applies to: the server's values, looked up.
TERMINAL_JOB = frozenset({pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_COMPLETED_WITH_FAILURES,
                          pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED})
CANCELLABLE_JOB = frozenset({pb.JOB_STATUS_PENDING, pb.JOB_STATUS_RUNNING})


def _prefix(enum: EnumDescriptor) -> str:
    return enum.values[0].name.removesuffix("UNSPECIFIED")


def value_name(enum: EnumDescriptor, number: int) -> str | None:
    """The enum value's full name (e.g. STEP_STATUS_FAILED), or None when not known here."""
    value = enum.values_by_number.get(number)
    return None if value is None or number == 0 else value.name


def label(enum: EnumDescriptor, number: int) -> str:
    """"Completed with failures" for a known value; "Unknown (N)" for any other."""
    name = value_name(enum, number)
    if name is None:
        return f"Unknown ({number})"
    return name.removeprefix(_prefix(enum)).replace("_", " ").capitalize()
