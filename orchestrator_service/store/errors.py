"""The store's errors, and how a database error is classified (a storage fault or a bug)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, OperationalError

from ..definitions import Violation, clip
from ..problems import Code, ServerError
from ..statuses import JobStatus


class RequestConflict(ServerError):
    """A request id already used, within a day, for another request."""

    code = Code.ALREADY_EXISTS

    def __init__(self, job_id: str) -> None:
        super().__init__(f"this request_id was already used for a different request: job "
                         f"{job_id}; use a new request_id for a new request")
        self.job_id = job_id


class JobStillRunning(ServerError):
    """DeleteJob on a job that is not terminal yet."""

    code = Code.FAILED_PRECONDITION

    def __init__(self, job_id: str, status: JobStatus) -> None:
        super().__init__(f"job {job_id} is {status.name}: only a finished job can be deleted "
                         "(cancel it first)")


class JobNotFound(ServerError, LookupError):
    code = Code.NOT_FOUND

    def public_message(self) -> str:
        return f"job {clip(repr(self.args[0]))} not found"


class StepNotFound(ServerError, LookupError):
    code = Code.NOT_FOUND

    def __init__(self, job_id: str, ref: str) -> None:
        super().__init__(f"job {job_id} has no step {ref!r}")
        self.job_id, self.ref = job_id, ref

    def public_message(self) -> str:
        return f"job {self.job_id} has no step {clip(repr(self.ref))}"


class AmbiguousId(ServerError, ValueError):
    """An id prefix that matches more than one thing."""

    code = Code.INVALID_ARGUMENT

    def public_message(self) -> str:
        return f"job_id: {clip(str(self), 300)}"

    def field_violations(self) -> Sequence[Violation]:
        return [Violation("job_id", clip(str(self), 300))]


class StaleWrite(Exception):
    """A write for an attempt that is not the step's current one, or to a terminal step or job."""


class LeaseLost(StaleWrite, ServerError):
    """This process no longer holds the job's lease: another replica runs it now."""

    code = Code.UNAVAILABLE  # the job changed hands mid-command: the new owner will answer

    def public_message(self) -> str:
        return f"{self}; try again"


@dataclass(frozen=True, slots=True)
class Receipt:
    """A committed write: its job and the events it appended (first > last: none)."""

    job_id: str
    first_seq: int
    last_seq: int


class _Committed(Exception):
    """A retried write found its own receipt: its first try committed (only the reply was
    lost). Raised inside the retry's transaction, which is then rolled back."""

    def __init__(self, receipt: Receipt) -> None:
        super().__init__(f"write already committed ({receipt})")
        self.receipt = receipt


class _StorageFault(Exception):
    """One try of a write failed for a storage reason (disk full, read-only, I/O, connection)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreUnavailable(ServerError):
    """The store kept failing after retries; ``reason`` is the database's own word."""

    code = Code.UNAVAILABLE

    def __init__(self, reason: str) -> None:
        super().__init__(f"storage unavailable: {reason}")
        self.reason = reason


STORAGE_FAULTS = ("locked", "busy", "disk i/o", "disk is full", "database or disk is full",
                  "readonly database", "read-only", "unable to open database", "no such table",
                  "connection", "server closed", "terminating", "could not serialize", "deadlock",
                  "no space left")


def _storage_fault(exc: DBAPIError) -> bool:
    """A fault of the storage (worth waiting out), not a bad statement (a bug)."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(w in text for w in STORAGE_FAULTS)


def storage_reason(exc: BaseException) -> str:
    """A storage error in one line: the driver's first line, without the statement."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0][:200]
