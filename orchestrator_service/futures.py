"""Settling a future whose caller may have gone: the one place for "unless cancelled"."""

from __future__ import annotations

import asyncio
from typing import TypeVar, cast

__all__ = ["settle"]

T = TypeVar("T")


def settle(fut: asyncio.Future[T], result: T | None = None,
           exc: BaseException | None = None) -> None:
    """``exc`` or ``result`` into ``fut``, unless it is done already (its caller was
    cancelled meanwhile: nobody waits for it)."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(cast(T, result))
