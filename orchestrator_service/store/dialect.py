"""Each database's ways, chosen once from the URL: the only place that tells them apart.

``SQLite`` (one file, one writer, one process; the default) and ``PostgreSQL`` (shared by
replicas: several writer threads, receipts for ambiguous commits, ``pg_notify``, leases).
Everything else in the store asks its ``Dialect``; nothing else looks at the URL's backend
(migrations and the schema's column types aside).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url

from ..ownership import Ownership, lock_file
from .batched import ArrayRows, JsonRows, RowBatches
from .rows import _NOTIFY

__all__ = ["Dialect", "PostgreSQL", "SQLite", "Unsupported", "database_file", "dialect_class",
           "open_dialect"]


class Unsupported(ValueError):
    """A URL of a database Stepwatch does not run on."""


class Dialect:
    name: ClassVar[str]
    #: Other processes (replicas) may write this database too: leases, notifications.
    shared: ClassVar[bool]
    #: Write threads (connections); one key's writes always go to the same one.
    writers: ClassVar[int]
    #: A write commits a receipt, so that a retry after a lost COMMIT reply is looked up.
    receipts: ClassVar[bool]
    #: Silence is suspect: a network between may stop answering mid-way (probe when quiet).
    probe_when_quiet: ClassVar[bool]
    #: How a batch of rows is written in one statement.
    rows: ClassVar[RowBatches] = RowBatches()

    def __init__(self, url: str, lease_s: float) -> None:
        self.url = url
        self.engine = self._engine(url, lease_s)
        #: For reads of several statements that must see one snapshot.
        self.reading: Engine = self.engine

    @staticmethod
    def _engine(url: str, lease_s: float) -> Engine:
        raise NotImplementedError

    @property
    def identity(self) -> str:
        """Which database this is, stably and without secrets."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def file_path(self) -> str | None:
        """The database file whose deletion or replacement must stop all writes (or None)."""
        return None

    @property
    def in_memory(self) -> bool:
        return False

    @property
    def readers(self) -> int:
        return 4

    def notify(self, c: Connection, payload: str) -> None:
        """Tell the other processes on this database (nothing to tell where there are none)."""

    @classmethod
    def claim_process(cls, url: str) -> Ownership:
        """What this process holds for its whole life to write the database."""
        raise NotImplementedError


class SQLite(Dialect):
    name = "sqlite"
    shared = False
    writers = 1
    receipts = False  # a commit either happened or raised
    probe_when_quiet = False  # a local file
    rows = JsonRows()

    @staticmethod
    def _engine(url: str, lease_s: float) -> Engine:
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # The driver's own transaction handling starts a transaction only at the first
            # write, so two SELECTs meant as one read would see two snapshots: take
            # transactions over and begin them ourselves (SQLAlchemy's documented recipe).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine

    @property
    def identity(self) -> str:
        return self.file_path or super().identity

    @property
    def file_path(self) -> str | None:
        return _sqlite_file(self.engine.url)

    @property
    def in_memory(self) -> bool:
        return self.file_path is None

    @property
    def readers(self) -> int:
        # An in-memory database is one per connection: read it on the writer's thread (0).
        return 0 if self.in_memory else 2

    @classmethod
    def claim_process(cls, url: str) -> Ownership:
        # One process per file: an OS lock the kernel drops when the process dies.
        path = _sqlite_file(make_url(url))
        return Ownership("an in-memory database") if path is None else lock_file(path)


class PostgreSQL(Dialect):
    name = "postgresql"
    shared = True
    writers = 4
    receipts = True
    probe_when_quiet = True
    rows = ArrayRows()

    def __init__(self, url: str, lease_s: float) -> None:
        super().__init__(url, lease_s)
        self.lease_s = lease_s
        # REPEATABLE READ: a read's job row and steps come from one commit (READ COMMITTED,
        # which writers keep, would let them come from two).
        self.reading = self.engine.execution_options(isolation_level="REPEATABLE READ")

    @staticmethod
    def _engine(url: str, lease_s: float) -> Engine:
        # Enough connections for every writer and reader thread and the lease thread at once.
        # A database that does not answer is a fault within seconds, not a hang (renewals must
        # fail in time for a replica to stop its commands before its leases expire).
        return create_engine(url, pool_pre_ping=True, pool_size=PostgreSQL.writers + 7,
                             max_overflow=4, connect_args={**pg_connect_args(lease_s),
                                                           "options": _options(url, lease_s)})

    def notify(self, c: Connection, payload: str) -> None:
        c.execute(_NOTIFY, {"p": payload})

    @property
    def listener_conninfo(self) -> str:
        """For the LISTEN connection (psycopg directly, not through SQLAlchemy's pool)."""
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @classmethod
    def claim_process(cls, url: str) -> Ownership:
        return Ownership("a shared PostgreSQL database (jobs owned through leases)")


def pg_connect_args(lease_s: float) -> dict[str, Any]:
    """A connection whose peer went silent (packets dropped, sockets open) fails within a
    fraction of a lease instead of hanging: TCP keepalives while it waits for a reply, and
    tcp_user_timeout while what it sent is unacknowledged. (No statement_timeout: a big
    write or a lock wait may rightly take longer; the lease watchdog is on the clock.)"""
    return {"connect_timeout": max(2, min(5, int(lease_s / 2))),
            "keepalives": 1, "keepalives_idle": max(1, int(lease_s * 0.2)),
            "keepalives_interval": 1, "keepalives_count": 2,
            "tcp_user_timeout": max(1000, int(lease_s * 400))}


def _options(url: str, lease_s: float) -> str:
    """The URL's own ``options`` plus a bound on a transaction left open.

    A replica cut off mid-transaction (its next statement or COMMIT never arrives, while the
    socket stays open on the server's side) would keep that transaction's row locks for as
    long as the server's TCP takes to notice: hours. The claim's SKIP LOCKED would pass its
    jobs over all that time, so no one would take them over. PostgreSQL ends such a session
    after half a lease (at least 1 s); our own transactions never wait between statements.
    """
    idle_ms = max(1000, int(lease_s * 500))
    own = f"-c idle_in_transaction_session_timeout={idle_ms}"
    given = make_url(url).query.get("options")
    return f"{given} {own}" if isinstance(given, str) and given else own


_DIALECTS: dict[str, type[Dialect]] = {"sqlite": SQLite, "postgresql": PostgreSQL}


def dialect_class(url: str) -> type[Dialect]:
    """The dialect of a URL (sqlalchemy's ArgumentError for what is not a URL)."""
    backend = make_url(url).get_backend_name()
    try:
        return _DIALECTS[backend]
    except KeyError:
        raise Unsupported(f"a {backend} database is not supported: use sqlite:///PATH or "
                          "postgresql+psycopg://...") from None


def open_dialect(url: str, lease_s: float = 10.0) -> Dialect:
    return dialect_class(url)(url, lease_s)


def database_file(url: str) -> str | None:
    """The absolute path of a SQLite database file; None for another database or memory."""
    return _sqlite_file(make_url(url))


def _sqlite_file(url: URL) -> str | None:
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return os.path.abspath(url.database)

