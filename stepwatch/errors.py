"""Typed errors for callers of the client: one class per status code we promise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class StepwatchError(Exception):
    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations or []


class InvalidArgument(StepwatchError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(StepwatchError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(StepwatchError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(StepwatchError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unavailable(StepwatchError):
    code = grpc.StatusCode.UNAVAILABLE


_BY_CODE = {cls.code: cls for cls in (InvalidArgument, NotFound, FailedPrecondition, OutOfRange,
                                      Unavailable)}


def bad_request(trailing_metadata: Any) -> list[FieldViolation]:
    """The BadRequest field violations carried in a call's trailers, if any."""
    out: list[FieldViolation] = []
    for key, value in trailing_metadata or ():
        if key != DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                detail.Unpack(br)
                out += [FieldViolation(v.field, v.description) for v in br.field_violations]
    return out


def from_rpc_error(err: grpc.aio.AioRpcError) -> StepwatchError:
    cls = _BY_CODE.get(err.code(), StepwatchError)
    exc = cls(err.details() or err.code().name, bad_request(err.trailing_metadata()))
    if cls is StepwatchError:
        exc.code = err.code()
    return exc
