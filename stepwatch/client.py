"""The small hand-written client every reader uses.

``watch(job_id)`` is the one watch loop: it follows a job across broken
streams by resuming from the last seq it delivered, so a caller sees each
event exactly once, in order, and the stream ends when the job is terminal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

import grpc

from stepwatch.automation import AutomationCalls, InputValue, put_inputs
from stepwatch.errors import StepwatchError, from_rpc_error
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
# Worth another try: the server is away, restarting, or shutting down.
# CANCELLED too: a busy server cancels new streams it cannot take yet.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.CANCELLED,
                       grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
                       grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})

OnRetry = Callable[[StepwatchError, float], Awaitable[None] | None]


def default_target() -> str:
    return os.environ.get("STEPWATCH_TARGET", DEFAULT_TARGET)


@dataclass(frozen=True)
class Credentials:
    """How to prove who we are: a bearer token, and TLS (a CA to trust, a client certificate
    for mTLS). ``from_env`` reads STEPWATCH_TOKEN (or STEPWATCH_TOKEN_FILE), STEPWATCH_TLS_CA,
    STEPWATCH_TLS_CERT and STEPWATCH_TLS_KEY."""

    token: str | None = None
    tls_ca: str | None = None  # paths to PEM files
    tls_cert: str | None = None
    tls_key: str | None = None

    @classmethod
    def from_env(cls, token: str | None = None, token_file: str | None = None,
                 tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None) -> Credentials:
        env = os.environ.get
        token = token or env("STEPWATCH_TOKEN")
        token_file = token_file or env("STEPWATCH_TOKEN_FILE")
        if not token and token_file:
            with open(token_file) as f:
                token = f.read().strip()
        return cls(token or None, tls_ca or env("STEPWATCH_TLS_CA"),
                   tls_cert or env("STEPWATCH_TLS_CERT"), tls_key or env("STEPWATCH_TLS_KEY"))

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert)

    def channel(self, target: str) -> grpc.aio.Channel:
        # One object per kind: grpc.aio files an interceptor under its first kind only.
        interceptors: list[Any] = ([_BearerUnary(self.token), _BearerStream(self.token)]
                                   if self.token else [])
        if not self.tls:
            return grpc.aio.insecure_channel(target, interceptors=interceptors)

        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()

        creds = grpc.ssl_channel_credentials(root_certificates=read(self.tls_ca),
                                             private_key=read(self.tls_key),
                                             certificate_chain=read(self.tls_cert))
        return grpc.aio.secure_channel(target, creds, interceptors=interceptors)


class _Bearer:
    """Adds 'authorization: Bearer <token>' to every call (over TLS or not: loopback tests
    and sidecars terminate TLS elsewhere)."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self.header]
        return details._replace(metadata=metadata)


class _BearerUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_token(details), request)


class _BearerStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_token(details), request)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter; ``max_tries`` None means retry forever."""

    initial: float = 0.2
    maximum: float = 5.0
    multiplier: float = 2.0
    max_tries: int | None = None

    def delay(self, tries: int) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** max(tries - 1, 0))
        return base * random.uniform(0.5, 1.0)


class Client(AutomationCalls):
    def __init__(self, target: str | None = None, *, channel: grpc.aio.Channel | None = None,
                 credentials: Credentials | None = None) -> None:
        self.target = target or default_target()
        creds = credentials if credentials is not None else Credentials.from_env()
        self._channel = channel or creds.channel(self.target)
        self._stub = pb_grpc.OrchestratorServiceStub(self._channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Any], request: object,
                    timeout: float | None = 30) -> Any:
        try:
            return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None

    async def definitions(self) -> list[pb.JobDefinitionInfo]:
        resp = await self._call(self._stub.ListJobDefinitions, pb.ListJobDefinitionsRequest())
        return list(resp.definitions)

    async def submit(self, definition_name: str | None = None, *,
                     definition_toml: str | None = None, request_id: str | None = None,
                     backoff: Backoff | None = None,
                     inputs: Mapping[str, InputValue] | None = None) -> pb.Job:
        """Submit a job. With ``backoff``, an unanswered submit is retried under the same
        ``request_id`` (one is made when none is given): a retry never creates a second job.
        """
        if (definition_name is None) == (definition_toml is None):
            raise ValueError("give exactly one of definition_name and definition_toml")
        if backoff is not None and request_id is None:
            request_id = uuid.uuid4().hex
        req = (pb.SubmitJobRequest(definition_name=definition_name) if definition_name is not None
               else pb.SubmitJobRequest(definition_toml=definition_toml))
        if request_id is not None:
            req.request_id = request_id
        put_inputs(req.inputs, inputs)
        tries = 0
        while True:
            try:
                resp: pb.SubmitJobResponse = await self._stub.SubmitJob(req, timeout=30)
                return resp.job
            except grpc.aio.AioRpcError as err:
                tries += 1
                if backoff is None:
                    raise from_rpc_error(err) from None
                await _pause_before_retry(err, tries, backoff, None)

    async def get_job(self, job_id: str) -> pb.Job:
        resp: pb.GetJobResponse = await self._call(self._stub.GetJob,
                                                   pb.GetJobRequest(job_id=job_id))
        return resp.job

    async def list_jobs(self, page_size: int = 0, page_token: str = "", status: int = 0,
                        name_prefix: str = "", created_after: dt.datetime | None = None,
                        created_before: dt.datetime | None = None) -> tuple[list[pb.Job], str]:
        req = pb.ListJobsRequest(page_size=page_size, page_token=page_token,
                                 status=cast(Any, status), name_prefix=name_prefix)
        if created_after is not None:
            req.created_after.FromDatetime(created_after)
        if created_before is not None:
            req.created_before.FromDatetime(created_before)
        resp = await self._call(self._stub.ListJobs, req)
        return list(resp.jobs), resp.next_page_token

    async def rerun(self, job_id: str, *, failed_only: bool = False,
                    request_id: str | None = None,
                    inputs: Mapping[str, InputValue] | None = None) -> pb.Job:
        """A finished job again; ``inputs`` replace the original's values of those names."""
        req = pb.RerunJobRequest(job_id=job_id, failed_only=failed_only,
                                 request_id=request_id or uuid.uuid4().hex)
        put_inputs(req.inputs, inputs)
        resp: pb.RerunJobResponse = await self._call(self._stub.RerunJob, req)
        return resp.job

    async def cancel(self, job_id: str) -> pb.Job:
        resp: pb.CancelJobResponse = await self._call(self._stub.CancelJob,
                                                      pb.CancelJobRequest(job_id=job_id))
        return resp.job

    async def watch(self, job_id: str, after_seq: int = 0, *, backoff: Backoff = Backoff(),
                    on_retry: OnRetry | None = None) -> AsyncIterator[pb.WatchJobResponse]:
        """Snapshot (when after_seq is 0), then every event once, in order; heartbeats too.

        A broken stream is resumed from the last seq delivered; errors that
        retrying cannot fix (NOT_FOUND, INVALID_ARGUMENT, OUT_OF_RANGE) raise.
        """
        last = after_seq

        def fresh(msg: pb.WatchJobResponse) -> bool:
            nonlocal last
            kind = msg.WhichOneof("kind")
            if kind == "snapshot":
                last = msg.snapshot.seq
            elif kind == "event":
                if msg.event.seq <= last:
                    return False  # already delivered before a reconnect
                last = msg.event.seq
            return True

        async with aclosing(_resuming(
                lambda: self._stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_seq=last)),
                fresh, backoff, on_retry)) as stream:
            async for msg in stream:
                yield msg

    async def list_children(self, job_id: str, step: str, *, attempt: int = 0, status: int = 0,
                            failed_first: bool = False, page_size: int = 0,
                            page_token: str = "") -> pb.ListChildrenResponse:
        order = pb.CHILD_ORDER_FAILED_FIRST if failed_first else pb.CHILD_ORDER_INDEX
        resp: pb.ListChildrenResponse = await self._call(self._stub.ListChildren, pb.ListChildrenRequest(
            job_id=job_id, step=step, attempt=attempt, status=cast(Any, status), order=order,
            page_size=page_size, page_token=page_token))
        return resp

    async def list_documents(self, job_id: str, tags: list[str] | None = None, page_size: int = 0,
                             page_token: str = "") -> pb.ListDocumentsResponse:
        resp: pb.ListDocumentsResponse = await self._call(
            self._stub.ListDocuments, pb.ListDocumentsRequest(
                job_id=job_id, tags=tags or [], page_size=page_size, page_token=page_token))
        return resp

    async def watch_logs(self, job_id: str, step: str, *, attempt: int = 0,
                         child_index: int | None = None, after_offset: int = 0,
                         backoff: Backoff = Backoff(), on_retry: OnRetry | None = None,
                         ) -> AsyncIterator[pb.WatchLogsResponse]:
        """A step attempt's log chunks, each once, in order; resumed from the last offset
        after a broken stream; ends when the attempt is over. attempt 0 is pinned to the
        step's latest attempt now, so a resume never slides onto a later attempt."""
        if attempt == 0:
            job = await self.get_job(job_id)
            found = [s for s in job.steps if step in (s.name, s.step_id)]
            attempt = max(found[0].attempt, 1) if found else 0
        last = after_offset

        def request() -> Any:
            req = pb.WatchLogsRequest(job_id=job_id, step=step, attempt=attempt,
                                      after_offset=last)
            if child_index is not None:
                req.child_index = child_index
            return self._stub.WatchLogs(req)

        def fresh(msg: pb.WatchLogsResponse) -> bool:
            nonlocal last
            if msg.WhichOneof("kind") == "chunk":
                if msg.chunk.offset <= last:
                    return False
                last = msg.chunk.offset
            return True

        async with aclosing(_resuming(request, fresh, backoff, on_retry)) as stream:
            async for msg in stream:
                yield msg

    async def watch_jobs(self, limit: int = 0, *, backoff: Backoff = Backoff(),
                         on_retry: OnRetry | None = None) -> AsyncIterator[pb.WatchJobsResponse]:
        """The queue feed; after a reconnect it starts again with a fresh snapshot."""
        async with aclosing(_resuming(
                lambda: self._stub.WatchJobs(pb.WatchJobsRequest(limit=limit)),
                lambda _msg: True, backoff, on_retry)) as stream:
            async for msg in stream:
                yield msg




async def _resuming(open_call: Callable[[], Any], fresh: Callable[[Any], bool], backoff: Backoff,
                    on_retry: OnRetry | None) -> AsyncGenerator[Any, None]:
    """The one watch loop: a server stream, opened again after a break (``open_call`` reads
    the resume point); ``fresh`` says whether a message was not delivered already. Ends
    when the server ends the stream with OK; raises what retrying cannot fix."""
    tries = 0
    while True:
        call = open_call()
        try:
            async for msg in call:
                tries = 0
                if fresh(msg):
                    yield msg
            return
        except grpc.aio.AioRpcError as err:
            tries += 1
            await _pause_before_retry(err, tries, backoff, on_retry)
        finally:
            call.cancel()


async def _pause_before_retry(err: grpc.aio.AioRpcError, tries: int, backoff: Backoff,
                              on_retry: OnRetry | None) -> None:
    """Raise what retrying cannot fix; otherwise tell ``on_retry`` and wait the backoff."""
    if err.code() not in RETRYABLE or (backoff.max_tries is not None and tries > backoff.max_tries):
        raise from_rpc_error(err) from None
    delay = backoff.delay(tries)
    if on_retry is not None:
        result = on_retry(from_rpc_error(err), delay)
        if asyncio.iscoroutine(result):
            await result
    await asyncio.sleep(delay)
