"""Whether the database is writable, as the store last found it; what health reports.

Told by every write and probe (``contact``), and by the lease sweep on PostgreSQL. A
SQLite file deleted or replaced while the server runs is lost for good: every write is
refused from then on, so nothing is written to a file nobody will read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable

from sqlalchemy import literal, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from .dialect import Dialect
from .errors import StoreUnavailable, _storage_fault, _StorageFault, storage_reason
from .rows import _PROBE_WRITE
from .values import now_us

__all__ = ["Health"]

log = logging.getLogger(__name__)

#: Called on the event loop when availability changes: (available, reason).
AvailabilityListener = Callable[[bool, str], None]


class Health:
    def __init__(self, dialect: Dialect,
                 on_availability: AvailabilityListener | None = None) -> None:
        self._dialect = dialect
        #: False while writes fail for a storage reason; the server's health follows it.
        self.available = True
        self.reason = ""
        self.on_availability = on_availability
        #: monotonic time of the last statement the database answered (health's freshness)
        self.last_contact = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None  # where on_availability is called
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._file_id: tuple[int, int] | None = None
        self._lost: str | None = None  # the database file is gone: never writable again

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def watch_file(self) -> None:
        """Remember the database file's identity, so that its deletion or replacement is noticed."""
        path = self._dialect.file_path
        if path is not None:
            st = os.stat(path)
            self._file_id = (st.st_dev, st.st_ino)

    def check_file(self) -> None:
        """Called periodically: a deleted or replaced file stops all writes."""
        try:
            self.raise_if_lost()
        except _StorageFault:
            pass

    def raise_if_lost(self) -> None:
        """Before each write: _StorageFault if the file is gone (noticed now or before)."""
        if self._lost is not None:
            raise _StorageFault(self._lost)
        path = self._dialect.file_path
        if path is None or self._file_id is None:
            return
        try:
            st = os.stat(path)
            same = (st.st_dev, st.st_ino) == self._file_id
        except FileNotFoundError:
            same = False
        if not same:
            self._lost = (f"the database file {path} was deleted or replaced while the server ran; "
                          "writes are refused so nothing is lost silently: restart the server")
            log.error("%s", self._lost)
            self._set(False, self._lost)
            raise _StorageFault(self._lost)

    def probe(self) -> None:
        """A read and a tiny write, on a connection of their own (blocking). Tells
        availability both ways; raises the database's error."""
        try:
            with self._dialect.engine.begin() as c:
                c.execute(select(literal(1))).scalar()
                c.execute(_PROBE_WRITE, {"v": str(now_us())})
        except DBAPIError as exc:
            if isinstance(exc, IntegrityError) or not _storage_fault(exc):
                raise
            self.contact(False, storage_reason(exc))
            raise
        self.contact(True, "")

    @property
    def probe_allowed(self) -> bool:
        """Whether probing can tell anything (not for a lost file or an in-memory database)."""
        return self._lost is None and not self._dialect.in_memory and not self.closed.is_set()

    @property
    def probe_when_quiet(self) -> bool:
        """Whether silence itself is suspect: a shared database may stop answering mid-way
        (a network between), so it is probed when nothing answered for a while."""
        return self._dialect.probe_when_quiet

    def require_available(self) -> None:
        """For commands: answer at once, rather than wait, when storage is known down."""
        if not self.available:
            raise StoreUnavailable(self.reason)

    def mark_unavailable(self, reason: str) -> None:
        self.contact(False, reason)

    def contact(self, ok: bool, reason: str) -> None:
        """The database answered (or failed to): the freshness health is judged by."""
        if ok:
            self.last_contact = time.monotonic()
        self._set(ok, reason)

    def _set(self, ok: bool, reason: str) -> None:
        if ok and self._lost is not None:
            return
        with self._lock:
            if ok == self.available and reason == self.reason:
                return
            changed = ok != self.available
            self.available, self.reason = ok, reason
        if changed:
            if ok:
                log.warning("storage is writable again")
            else:
                log.error("storage unavailable: %s", reason)
            if self.on_availability is not None and self.loop is not None:
                self.loop.call_soon_threadsafe(self.on_availability, ok, reason)
