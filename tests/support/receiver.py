"""A real HTTP webhook receiver for tests: records each POST, checks its signature, and
answers as a test scripts it (a status per try, or hold the answer until released)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format

from stepwatch.v1 import orchestrator_pb2 as pb


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def payload(self) -> pb.WebhookPayload:
        return json_format.Parse(self.body, pb.WebhookPayload())

    def signed_by(self, secret: str) -> bool:
        want = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, self.headers.get("x-stepwatch-signature", ""))


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._cond = threading.Condition()
        #: path -> statuses to answer, in order (then 200)
        self.script: dict[str, list[int]] = {}
        #: paths whose answer waits until ``release`` (the request is recorded first)
        self.hold: set[str] = set()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                r = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                             time.time())
                with receiver._cond:
                    receiver.received.append(r)
                    receiver._cond.notify_all()
                    todo = receiver.script.get(self.path, [])
                    status = todo.pop(0) if todo else 200
                if self.path in receiver.hold:
                    receiver._released.wait(60)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def release(self) -> None:
        self._released.set()

    def wait_for(self, ok: Callable[[list[Received]], bool], timeout: float = 60) -> list[Received]:
        """The requests so far, once ``ok`` holds of them (TimeoutError at the deadline)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ok(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(json.dumps([(r.path, r.headers.get("x-stepwatch-event"))
                                                   for r in self.received]))
                self._cond.wait(left)
            return list(self.received)

    def on(self, path: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.path == path]

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()
