"""Open streams by caller: a cap per caller (a token), and an end for every stream of a token
that a reload of the token file revoked. Streams of the unauthenticated development default
(no token file) are not capped: there is one caller, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from .errors import RpcError

__all__ = ["Stream", "StreamBook", "StreamRevoked"]

WRITE_GRACE_S = 5.0  # a revoked stream stuck writing to a client that does not read


class StreamRevoked(Exception):
    """This stream's token was revoked while it was open."""


@dataclass
class Stream:
    """One open stream. ``waiting`` while it waits for its next item (a cancel lands inside
    the stream's own code, where it becomes UNAUTHENTICATED); otherwise it is writing, and a
    revocation is seen as soon as the write returns."""

    task: asyncio.Task[object]
    waiting: bool = False
    revoked: bool = False

    def check(self) -> None:
        if self.revoked:
            raise StreamRevoked()


class StreamBook:
    def __init__(self, max_per_caller: int) -> None:
        self.max_per_caller = max_per_caller  # 0: no cap
        self._open: dict[str, dict[asyncio.Task[object], Stream]] = {}

    @contextlib.contextmanager
    def opened(self, key: str | None) -> Iterator[Stream | None]:
        """Around a stream of caller ``key`` (None: not capped, never revoked). A revoked
        stream raises StreamRevoked from its current wait, or from Stream.check."""
        task = asyncio.current_task()
        if key is None or task is None:
            yield None
            return
        mine = self._open.setdefault(key, {})
        if self.max_per_caller and len(mine) >= self.max_per_caller:
            raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"this caller already has {len(mine)} open streams (at most "
                           f"{self.max_per_caller}, --max-streams-per-caller); close some first")
        stream = mine[task] = Stream(task)
        try:
            yield stream
        except asyncio.CancelledError:
            if stream.revoked:  # ended by revoke(), not by the client or the server
                task.uncancel()
                raise StreamRevoked() from None
            raise
        finally:
            mine.pop(task, None)
            if not mine:
                self._open.pop(key, None)

    def revoke(self, still_valid: set[str]) -> int:
        """End every stream whose key is not in ``still_valid``; how many were ended."""
        ended = 0
        for key in [k for k in self._open if k not in still_valid]:
            for stream in self._open[key].values():
                stream.revoked = True
                if stream.waiting:
                    stream.task.cancel()
                else:  # mid-write: seen when the write returns, or ended if it never does
                    asyncio.get_running_loop().call_later(WRITE_GRACE_S, _end, stream.task)
                ended += 1
        return ended


def _end(task: asyncio.Task[object]) -> None:
    if not task.done():
        task.cancel()
