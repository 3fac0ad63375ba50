"""The values that cross the store's edge: what a write carries, what a read returns."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
)

from ..model import (
    ChildCounts,
    StepState,
)
from ..rules import StepTransition
from ..statuses import ChildStatus, LogStream, StepStatus
from ..step_types.base import DocumentPut
from .errors import Receipt


@dataclass(frozen=True)
class RequestKey:
    """A request id as stored: ``key`` scopes it to its caller, ``digest`` is what it asked."""

    key: str
    digest: str


#: Re-reads a committed write's result (and the logs it may have grown) from the database.
Recover = Callable[[Connection, Receipt], tuple[Any, set[tuple[str, int]]]]


def now_us() -> int:
    return time.time_ns() // 1000


def new_id() -> str:
    return uuid.uuid4().hex


class ChildChange(NamedTuple):
    """A child's new status; a finished one also carries its error, output size and result.
    (A tuple: one is made per child move on the loop, where a frozen dataclass's __init__
    cost several times as much.)"""

    child: int  # its index in the attempt
    status: ChildStatus
    at: int
    error: str | None = None
    output_bytes: int = 0
    result: str | None = None


@dataclass(frozen=True, slots=True)
class LogLine:
    """Output of a child (or of the step's init: child None), whole lines of one stream."""

    child: int | None
    stream: int
    text: str
    at: int


@dataclass(frozen=True, slots=True)
class Rerun:
    """A rerun's origin and the original's steps it carries over (by name)."""

    original: str
    carried: Mapping[str, StepState]


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """A child row as readers see it; ``phase`` is its part of a failed-first listing."""

    index: int
    key: str
    status: ChildStatus
    error: str | None
    error_reason: int | None
    attempt: int
    started_at: int | None
    finished_at: int | None
    output_bytes: int
    result: str | None
    phase: int = 0


@dataclass(frozen=True, slots=True)
class LogChunk:
    offset: int
    child: int | None
    stream: LogStream
    text: str
    at: int


@dataclass(frozen=True, slots=True)
class LogPage:
    """Chunks read with the attempt's head offset, the first offset kept, and whether it ended."""

    head: int
    first_kept: int
    ended: bool
    chunks: list[LogChunk]


@dataclass(frozen=True, slots=True)
class ProgressBatch:
    """Child transitions of one step attempt since the last write, with the counts after them."""

    step_id: str
    attempt: int
    children: list[ChildChange]
    documents: list[DocumentPut]
    counts: ChildCounts
    document_delta: int
    logs: list[LogLine] = field(default_factory=list)
    #: The attempt's children, inserted PENDING with this batch (its first): a step's
    #: children cost no transaction of their own; a quick step's are written with its end.
    new_children: Sequence[str] | None = None

    @property
    def empty(self) -> bool:
        return not (self.children or self.documents or self.document_delta or self.logs
                    or self.new_children is not None)


@dataclass(frozen=True, slots=True)
class StepWrite:
    """One step's transition, fenced by the attempt it belongs to (0: not started yet).

    ``decide`` gets the step as stored, under the job's lock, and returns its new
    status (a rule); None: no transition, the attempt goes on (its progress alone).
    ``progress`` is the attempt's last child changes, committed with the transition.
    ``after`` (a step id, a status): the write is made only if that step, as its row reads
    at this point of the transaction (after the writes before it), has that status; else
    the step is left as it is (returned unchanged, no error). How a step's start rides on
    the commit of the end that made it ready (jobrun.py): if the end is refused, so is
    the start, whichever transaction the two end up in.
    """

    step_id: str
    attempt: int
    decide: Callable[[StepState], StepTransition] | None
    progress: ProgressBatch | None = None
    after: tuple[str, StepStatus] | None = None
