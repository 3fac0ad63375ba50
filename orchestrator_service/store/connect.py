"""Connecting: the SQLAlchemy engine of a URL, with each database's settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
)

PG_WRITERS = 4  # write threads (connections) on PostgreSQL; SQLite has one writer


def make_engine(url: str, lease_s: float = 10.0) -> Engine:
    if url.startswith("sqlite"):
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
    # Enough connections for every writer and reader thread and the lease thread at once.
    # A database that does not answer is a fault within seconds, not a hang (renewals must
    # fail in time for a replica to stop its commands before its leases expire).
    return create_engine(url, pool_pre_ping=True, pool_size=PG_WRITERS + 7, max_overflow=4,
                         connect_args=pg_connect_args(lease_s) if url.startswith("postgresql")
                         else {})


def pg_connect_args(lease_s: float) -> dict[str, Any]:
    """A connection whose peer went silent (packets dropped, sockets open) fails within a
    fraction of a lease instead of hanging: TCP keepalives while it waits for a reply, and
    tcp_user_timeout while what it sent is unacknowledged. (No statement_timeout: a big
    write or a lock wait may rightly take longer; the lease watchdog is on the clock.)"""
    return {"connect_timeout": max(2, min(5, int(lease_s / 2))),
            "keepalives": 1, "keepalives_idle": max(1, int(lease_s * 0.2)),
            "keepalives_interval": 1, "keepalives_count": 2,
            "tcp_user_timeout": max(1000, int(lease_s * 400))}


def _is_memory(url: str) -> bool:
    return url.startswith("sqlite") and (":memory:" in url or url.rstrip("/") in ("sqlite:", "sqlite:/"))
