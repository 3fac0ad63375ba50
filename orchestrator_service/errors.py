"""Domain exceptions -> gRPC status with rich details (grpcio-status)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from .definitions import Violation
from .problems import Code, ServerError

_GRPC: dict[Code, grpc.StatusCode] = {code: grpc.StatusCode[code.value] for code in Code}


def grpc_code(code: Code) -> grpc.StatusCode:
    """The one place a refusal's kind becomes a gRPC status code."""
    return _GRPC[code]


class RpcError(Exception):
    """Raised by the servicer's helpers; turned into a status at the edge."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 violations: Sequence[Violation] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.violations = list(violations)

    def to_status(self) -> grpc.Status:
        details = []
        if self.violations:
            bad = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in self.violations])
            packed = any_pb2.Any()
            packed.Pack(bad)
            details.append(packed)
        status: grpc.Status = rpc_status.to_status(status_pb2.Status(
            code=self.code.value[0], message=self.message, details=details))
        return status


def from_server_error(exc: ServerError) -> RpcError:
    return RpcError(grpc_code(exc.status_code), exc.public_message(), exc.field_violations())


def invalid(field: str, description: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {description}",
                    [Violation(field, description)])
