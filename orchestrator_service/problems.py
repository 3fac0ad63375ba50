"""The server's one error tree: every error a caller can be told about is a ``ServerError``
with its ``Code``, raised where it is known and mapped to a gRPC status in one place
(service.py). Pure: no gRPC here, so domain modules raise these without importing it.

Anything else that escapes a call is a bug, answered INTERNAL with an error id that is
in the server's log.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .definitions import Violation

__all__ = ["Code", "ServerError", "text_of"]


class Code(enum.Enum):
    """What kind of refusal (the gRPC status it becomes is service.py's business)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNAVAILABLE = "UNAVAILABLE"


class ServerError(Exception):
    """An error a caller is told about: its code, a message for the caller, and (for bad
    input) the fields at fault."""

    code: ClassVar[Code] = Code.FAILED_PRECONDITION

    @property
    def status_code(self) -> Code:
        """The code of this error (a subclass may decide it per instance)."""
        return self.code

    def public_message(self) -> str:
        """What the caller reads (bounded, no secrets); the exception's text by default."""
        return str(self)

    def field_violations(self) -> Sequence[Violation]:
        """For bad input: each field at fault (google.rpc.BadRequest)."""
        return ()


def text_of(exc: BaseException) -> str:
    """An exception as one message: its text, or its type's name when it has none."""
    return str(exc) or type(exc).__name__
