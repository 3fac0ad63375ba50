"""A TCP proxy between an orchestrator and PostgreSQL that fails the way networks do.

It reads the PostgreSQL protocol from the client (plain startup, then typed messages;
statements from Query, Parse, and Bind by prepared name), so a fault can be aimed at one
statement:

- ``cut()``: every connection closed now (both ends), new ones refused until ``restore()``;
- ``blackhole()``: nothing passes either way, sockets stay open (packets dropped, as a
  silent partition); ``restore()`` then closes those connections, as their TCP would have;
- ``lose_commit_reply(pattern)``: the next connection that sends a statement containing
  ``pattern`` has its next COMMIT forwarded, PostgreSQL's answer to it read and dropped,
  then both ends closed: the commit happened, and the client cannot know;
- ``cut_on(pattern)``: the next statement containing ``pattern`` is not forwarded; its
  connection is closed instead;
- ``blackhole_after(pattern)``: the next statement containing ``pattern`` is forwarded, then
  the partition begins (as ``blackhole()``): PostgreSQL runs it, its reply is dropped, and
  its transaction stays open on the server with whatever locks it took.

Each aimed fault returns a ``threading.Event`` set when it fired.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from dataclasses import dataclass, field

__all__ = ["FaultProxy"]

_NEGOTIATION = {80877103, 80877104}  # SSLRequest, GSSENCRequest: answered by one byte
_COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"  # CommandComplete for COMMIT


@dataclass
class _Aim:
    pattern: str
    action: str  # "lose_commit_reply" | "cut" | "blackhole_after"
    fired: threading.Event = field(default_factory=threading.Event)


class _Conn:
    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy, self.client, self.server = proxy, client, server
        self.buf = b""
        self.started = False  # past the startup message: typed messages from here on
        self.names: dict[str, str] = {}  # prepared statement name -> its SQL
        self.commit_aim: _Aim | None = None  # its next COMMIT's reply is to be lost
        self.dropping: _Aim | None = None  # COMMIT sent: read PostgreSQL's answer, drop it
        self.seen = b""
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def run(self) -> None:
        try:
            while not self.closed:
                ready, _, _ = select.select([self.client, self.server], [], [], 0.1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if self.proxy.mode == "blackhole":
                        continue  # dropped on the floor, both ways
                    if s is self.client:
                        self.from_client(data)
                    else:
                        self.from_server(data)
        except OSError:
            return
        finally:
            self.close()
            self.proxy.forget(self)

    def from_server(self, data: bytes) -> None:
        if self.dropping is None:
            self.client.sendall(data)
            return
        self.seen += data
        if _COMMIT_DONE in self.seen or b"E\x00" in self.seen:
            aim, self.dropping = self.dropping, None
            self.close()  # PostgreSQL committed; the client hears nothing, then a dead socket
            aim.fired.set()

    def from_client(self, data: bytes) -> None:
        self.buf += data
        out = b""
        partition: _Aim | None = None
        while True:
            message = self._next_message()
            if message is None:
                break
            kind, raw = message
            sql = self._statement(kind, raw)
            aim = self.proxy.take_aim(sql) if sql is not None else None
            if aim is not None and aim.action == "cut":
                self.close()
                aim.fired.set()
                return
            if aim is not None and aim.action == "blackhole_after":
                partition = aim
            elif aim is not None:
                self.commit_aim = aim
            out += raw
            if sql is not None and self.commit_aim is not None and sql.strip().upper() == "COMMIT":
                self.server.sendall(out)
                self.dropping, self.commit_aim, out = self.commit_aim, None, b""
        if out:
            self.server.sendall(out)
        if partition is not None:
            # Forwarded with what came with it (the Sync that runs it); nothing more passes.
            self.proxy.blackhole()
            partition.fired.set()

    def _next_message(self) -> tuple[str, bytes] | None:
        if not self.started:
            if len(self.buf) < 8:
                return None
            (length,) = struct.unpack("!I", self.buf[:4])
            if len(self.buf) < length:
                return None
            raw, self.buf = self.buf[:length], self.buf[length:]
            (code,) = struct.unpack("!I", raw[4:8])
            if code not in _NEGOTIATION:
                self.started = True
            return "", raw
        if len(self.buf) < 5:
            return None
        (length,) = struct.unpack("!I", self.buf[1:5])
        if len(self.buf) < length + 1:
            return None
        raw, self.buf = self.buf[:length + 1], self.buf[length + 1:]
        return chr(raw[0]), raw

    def _statement(self, kind: str, raw: bytes) -> str | None:
        body = raw[5:]
        if kind == "Q":
            return body.rstrip(b"\0").decode(errors="replace")
        if kind == "P":
            name, rest = body.split(b"\0", 1)
            sql = rest.split(b"\0", 1)[0].decode(errors="replace")
            self.names[name.decode()] = sql
            return sql
        if kind == "B":
            _portal, rest = body.split(b"\0", 1)
            return self.names.get(rest.split(b"\0", 1)[0].decode())
        return None


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        self.mode = "pass"  # pass | cut | blackhole
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._aims: list[_Aim] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()

    def url(self, url: str) -> str:
        """The same database URL, through this proxy."""
        return url.replace(f":{self.upstream[1]}/", f":{self.port}/")

    # -- faults -----------------------------------------------------------------

    def cut(self) -> None:
        self.mode = "cut"
        self._close_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def restore(self) -> None:
        if self.mode == "blackhole":
            self._close_all()  # their TCP would have given up by now
        self.mode = "pass"

    def lose_commit_reply(self, pattern: str) -> threading.Event:
        return self._aim(pattern, "lose_commit_reply")

    def cut_on(self, pattern: str) -> threading.Event:
        return self._aim(pattern, "cut")

    def blackhole_after(self, pattern: str) -> threading.Event:
        return self._aim(pattern, "blackhole_after")

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self.listener.close()
        self._close_all()

    # -- inside ------------------------------------------------------------------

    def _aim(self, pattern: str, action: str) -> threading.Event:
        aim = _Aim(pattern, action)
        with self._lock:
            self._aims.append(aim)
        return aim.fired

    def take_aim(self, sql: str) -> _Aim | None:
        with self._lock:
            for aim in self._aims:
                if aim.pattern in sql:
                    self._aims.remove(aim)
                    return aim
        return None

    def forget(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _close_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            conn = _Conn(self, client, server)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=conn.run, daemon=True, name="fault-proxy-conn").start()
