"""What one replica tells the others through ``pg_notify``: typed, encoded and decoded here.

A payload is one line per notice, fields separated by spaces (ids and names hold none).
A notice is only ever "there is more": the receiver reads the database for what it means.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CancelAsked", "Deleted", "LogGrew", "LogHead", "Notice", "decode", "encode"]


@dataclass(frozen=True)
class LogHead:
    """A job's event log grew to ``head`` (``header``: its job header changed too)."""

    owner: str
    job_id: str
    head: int
    header: bool


@dataclass(frozen=True)
class LogGrew:
    """An attempt's output log grew (or its attempt ended)."""

    owner: str
    step_id: str
    attempt: int


@dataclass(frozen=True)
class CancelAsked:
    """A CancelJob for a job the replica holding it must carry out."""

    owner: str
    job_id: str


@dataclass(frozen=True)
class Deleted:
    owner: str
    job_ids: tuple[str, ...]


Notice = LogHead | LogGrew | CancelAsked | Deleted


def encode(notices: Iterable[Notice]) -> str:
    return "\n".join(_line(n) for n in notices)


def _line(n: Notice) -> str:
    match n:
        case LogHead(owner, job_id, head, header):
            return f"e {owner} {job_id} {head} {int(header)}"
        case LogGrew(owner, step_id, attempt):
            return f"l {owner} {step_id} {attempt}"
        case CancelAsked(owner, job_id):
            return f"c {owner} {job_id}"
        case Deleted(owner, job_ids):
            return f"d {owner} {' '.join(job_ids)}"


def decode(payload: str) -> list[Notice]:
    """The notices of a payload; a line this version does not know is skipped."""
    out: list[Notice] = []
    for line in payload.splitlines():
        kind, owner, *rest = line.split(" ")
        if kind == "e" and len(rest) == 3:
            out.append(LogHead(owner, rest[0], int(rest[1]), rest[2] == "1"))
        elif kind == "l" and len(rest) == 2:
            out.append(LogGrew(owner, rest[0], int(rest[1])))
        elif kind == "c" and len(rest) == 1:
            out.append(CancelAsked(owner, rest[0]))
        elif kind == "d":
            out.append(Deleted(owner, tuple(rest)))
    return out
