"""gRPC servicer: thin translation between proto and the engine/store.

Each method checks its arguments, calls one domain function, and converts the
answer; domain exceptions become status codes in ``_errors``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

from . import convert, wire
from .auth import Authenticator, Caller, Role
from .broker import Broker, Deleted
from .catalog import Catalog, Entry
from .definitions import clip, parse_definition
from .engine import Engine
from .errors import RpcError, from_server_error, invalid
from .metrics import Metrics
from .model import Event, JobState, StepState
from .problems import ServerError
from .snapshots import JobSnapshots
from .statuses import ChildStatus, JobStatus
from .store import RequestKey
from .streams import StreamBook, StreamRevoked
from .watch import (
    Heartbeat,
    JobsSnapshot,
    Snapshot,
    follow_job,
    follow_jobs,
    follow_logs,
)

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
MAX_PAGE = 1000
MAX_ID = 200  # characters of a job id or request id
HEADER_TEXT = 1024  # characters of a description or failure in a list or feed
DEFAULT_PAGE = 50
DEFAULT_FEED = 100
SNAPSHOT_CACHE = 64  # encoded WatchJob snapshots kept, by (job, head)
DEFAULT_CHILDREN = 100


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Every error a caller may be told about is a ServerError: mapped in one place."""
    try:
        yield
    except ServerError as exc:
        raise from_server_error(exc) from None


class Undecodable:
    """A request whose bytes are not a valid message (e.g. a string field that is not UTF-8)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _check_decoded(request: Any) -> None:
    if isinstance(request, Undecodable):
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"the request is not a valid message ({clip(str(request.error))}); "
                       "string fields must be UTF-8")
    # Ids, names and tags go to the database, and PostgreSQL text cannot hold NUL. (A
    # definition's NULs are reported with their place in the TOML by the definition check.)
    for fd, value in request.ListFields():
        if fd.type != fd.TYPE_STRING or fd.name == "definition_toml":
            continue
        if any("\x00" in v for v in (value if isinstance(value, str) else list(value))):
            raise invalid(fd.name, "must not contain NUL characters")


async def _internal(context: Any, method: str) -> None:
    error_id = uuid.uuid4().hex[:12]
    log.exception("internal error %s in %s", error_id, method)
    await context.abort(grpc.StatusCode.INTERNAL,
                        f"internal error {error_id}: a bug; the server log has the details")


def _rpc(method: Callable[[Any, Any, Any], Awaitable[Any]]) -> Callable[[Any, Any, Any], Awaitable[Any]]:
    """Unary method wrapper: RpcError -> abort with its status."""

    async def wrapper(self: Any, request: Any, context: Any) -> Any:
        try:
            _check_decoded(request)
            with _errors():
                return await method(self, request, context)
        except RpcError as err:
            await context.abort_with_status(err.to_status())
        except grpc.aio.AbortError:
            raise
        except Exception:  # a bug: INTERNAL with an id to find it in the log, never UNKNOWN
            await _internal(context, method.__name__)

    wrapper.__name__ = method.__name__
    return wrapper


def _stream(method: Callable[[Any, Any, Any], AsyncIterator[Any]],
            ) -> Callable[[Any, Any, Any], AsyncIterator[Any]]:
    """Server-streaming wrapper: RpcError -> abort with its status."""

    async def wrapper(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            _check_decoded(request)
            with _errors():  # checked by the interceptor; a reload since may refuse it now
                caller = self.auth.caller(context.invocation_metadata())
            with _errors(), self.streams.opened(caller.key) as stream, \
                    self.metrics.watching(method.__name__):
                if stream is None:
                    async for item in method(self, request, context):
                        yield item
                    return
                items = method(self, request, context).__aiter__()
                while True:
                    stream.waiting = True
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        stream.waiting = False
                    yield item
                    stream.check()
        except RpcError as err:
            await context.abort_with_status(err.to_status())
        except StreamRevoked:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "the token of this stream was revoked")
        except grpc.aio.AbortError:
            raise
        except Exception:
            await _internal(context, method.__name__)

    wrapper.__name__ = method.__name__
    return wrapper


def _require_job_id(job_id: str) -> str:
    if not job_id:
        raise invalid("job_id", "is required")
    if len(job_id) > MAX_ID:
        raise invalid("job_id", f"is {len(job_id)} characters; a job id has at most {MAX_ID}")
    return job_id


def add_to_server(servicer: OrchestratorServicer, server: grpc.aio.Server) -> None:
    """Register the service like the generated code does, with requests decoded safely.

    A request that does not decode (a string field with bad UTF-8) reaches the method as
    ``Undecodable`` and is answered INVALID_ARGUMENT, instead of the library's UNKNOWN.
    """
    service = pb.DESCRIPTOR.services_by_name["OrchestratorService"]
    handlers = {}
    for m in service.methods:
        request_type = getattr(pb, m.input_type.name)
        make = (grpc.unary_stream_rpc_method_handler if m.server_streaming
                else grpc.unary_unary_rpc_method_handler)
        handlers[m.name] = make(getattr(servicer, m.name),
                                request_deserializer=_safe_decoder(request_type),
                                response_serializer=_serializer(getattr(pb, m.output_type.name)))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name,
                                                                          handlers),))


def _serializer(message_type: Any) -> Callable[[Any], bytes]:
    """A response already encoded (an event's bytes, a cached snapshot) goes out as it is."""
    serialize = message_type.SerializeToString

    def encode(message: Any) -> bytes:
        return message if isinstance(message, bytes) else serialize(message)

    return encode


def _safe_decoder(message_type: Any) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return Undecodable(exc)

    return decode


class PageTokens:
    """Opaque page tokens, signed with the database's secret: forged ones are refused.

    A token names its query (``scope``): one issued for another query is refused too.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, scope: str, value: str) -> str:
        body = f"v3\n{scope}\n{value}"
        return base64.urlsafe_b64encode(f"{body}\n{self._mac(body)}".encode()).decode()

    def open(self, token: str, scope: str) -> str | None:
        """The value a token of this scope carries; None for no token."""
        if not token:
            return None
        try:
            if len(token) > 2000:
                raise ValueError("too long")
            body, _, mac = base64.urlsafe_b64decode(token.encode()).decode().rpartition("\n")
            version, got_scope, value = body.split("\n", 2)
            if version != "v3" or not hmac.compare_digest(mac, self._mac(body)):
                raise ValueError("not signed by this server")
            if got_scope != scope:
                raise ValueError("issued for another query")
            return value
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise invalid("page_token", "is not a token this server issued for this query") from None

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()[:32]


def _bounded_header(job: JobState) -> pb.Job:
    """A job header for a list or feed: long texts clipped so any page fits in a message."""
    msg = convert.job(job)
    if len(msg.description) > HEADER_TEXT:
        msg.description = clip(msg.description, HEADER_TEXT)
    if len(msg.failure.message) > HEADER_TEXT:
        msg.failure.message = clip(msg.failure.message, HEADER_TEXT)
    return msg


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    def __init__(self, engine: Engine, catalog: Catalog, broker: Broker, heartbeat_s: float,
                 auth: Authenticator | None = None, metrics: Metrics | None = None,
                 streams: StreamBook | None = None) -> None:
        self.engine = engine
        self.auth = auth or Authenticator(None)
        self.streams = streams or StreamBook(0)
        self.metrics = metrics or Metrics()
        self.catalog = catalog
        self.broker = broker
        self.heartbeat_s = heartbeat_s
        self.snapshots = JobSnapshots(engine.store)
        self._snapshots: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.tokens: PageTokens | None = None

    def _snapshot_bytes(self, job: JobState) -> bytes:
        """One encoding per (job, head): many watchers opening at once share it."""
        key = (job.job_id, job.head_seq)
        found = self._snapshots.get(key)
        if found is None:
            found = pb.WatchJobResponse(snapshot=pb.JobSnapshot(
                job=convert.job(job), seq=job.head_seq)).SerializeToString()
            self._snapshots[key] = found
            while len(self._snapshots) > SNAPSHOT_CACHE:
                self._snapshots.popitem(last=False)
        return found

    @staticmethod
    def _request_key(caller: Caller, request_id: str, *asked: str) -> RequestKey | None:
        """A request id scoped to its caller, and bound to what the request asks."""
        if not request_id:
            return None
        if len(request_id) > MAX_ID:
            raise invalid("request_id", f"is {len(request_id)} characters; at most {MAX_ID}")
        key = hashlib.sha256(f"{caller.scope}\0{request_id}".encode()).hexdigest()
        return RequestKey(key, hashlib.sha256("\0".join(asked).encode()).hexdigest())

    async def _job_id(self, ref: str) -> str:
        """The job's full id, from itself or a unique prefix of 8 or more characters."""
        return await self.engine.store.resolve_job_id(_require_job_id(ref))

    async def _step(self, request: Any) -> tuple[str, StepState, int]:
        """(job_id, step, attempt) named by a request with job_id, step, attempt (0 = latest)."""
        job_id = await self._job_id(request.job_id)
        if not request.step:
            raise invalid("step", "is required: a step_id or a step name")
        if len(request.step) > MAX_ID:
            raise invalid("step", f"is {len(request.step)} characters; at most {MAX_ID}")
        step = await self.engine.store.find_step(job_id, request.step)
        # A step that has not started yet is followed from its first attempt.
        latest = max(step.attempt, 1)
        attempt = request.attempt or latest
        if attempt > latest:
            raise RpcError(grpc.StatusCode.NOT_FOUND,
                           f"step {step.name!r} has no attempt {attempt} (it is at {step.attempt})")
        return job_id, step, attempt

    async def _tokens(self) -> PageTokens:
        if self.tokens is None:
            self.tokens = PageTokens(await self.engine.store.page_secret())
        return self.tokens

    @_rpc
    async def ListJobDefinitions(  # noqa: N802
            self, request: pb.ListJobDefinitionsRequest, context: Context) -> pb.ListJobDefinitionsResponse:
        entries = sorted(self.catalog.entries().items())
        return pb.ListJobDefinitionsResponse(definitions=[
            convert.definition_info(e.definition) if isinstance(e, Entry)
            else pb.JobDefinitionInfo(name=name, error=clip(str(e.error), 2000))
            for name, e in entries])

    @_rpc
    async def SubmitJob(  # noqa: N802
            self, request: pb.SubmitJobRequest, context: Context) -> pb.SubmitJobResponse:
        source = request.WhichOneof("source")
        if source == "definition_name":
            entry = self.catalog.get(request.definition_name)
            definition, text = entry.definition, entry.source
        elif source == "definition_toml":
            # Any command at all: an admin's right (an operator runs the reviewed catalog).
            self.auth.require(context.invocation_metadata(), Role.ADMIN,
                              "an inline definition (definition_toml)")
            text = request.definition_toml
            # A thread: a big definition takes a while to check, and the loop serves everyone.
            definition = await asyncio.to_thread(parse_definition, text, self.engine.step_types,
                                                 self.engine.limits)
        else:
            raise invalid("source", "set definition_name or definition_toml")
        key = self._request_key(self.auth.caller(context.invocation_metadata()),
                                request.request_id, "submit", source,
                                request.definition_name or request.definition_toml)
        job = await self.engine.submit(definition, text, key,
                                       "catalog" if source == "definition_name" else "inline")
        return pb.SubmitJobResponse(job=convert.job(job))

    @_rpc
    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:  # noqa: N802
        job = await self.snapshots.get(await self._job_id(request.job_id))
        return pb.GetJobResponse(job=job)

    @_rpc
    async def ListJobs(  # noqa: N802
            self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        size = _page_size(request.page_size, DEFAULT_PAGE)
        status = _enum_value(JobStatus, request.status, "status")
        if len(request.name_prefix) > MAX_ID:
            raise invalid("name_prefix", f"is {len(request.name_prefix)} characters; at most {MAX_ID}")
        created = (_micros(request, "created_after"), _micros(request, "created_before"))
        scope = f"jobs {request.status} {request.name_prefix!r} {created[0]} {created[1]}"
        tokens = await self._tokens()
        after = tokens.open(request.page_token, scope)
        if after is not None and not (after.isdigit() and 0 < int(after) < 2**63):
            raise invalid("page_token", "is not a token this server issued")
        jobs, last = await self.engine.store.list_jobs(
            size, None if after is None else int(after), status, request.name_prefix, created)
        return pb.ListJobsResponse(jobs=[_bounded_header(j) for j in jobs],
                                   next_page_token="" if last is None else tokens.sign(scope, str(last)))

    @_rpc
    async def CancelJob(  # noqa: N802
            self, request: pb.CancelJobRequest, context: Context) -> pb.CancelJobResponse:
        job = await self.engine.cancel(await self._job_id(request.job_id))
        return pb.CancelJobResponse(job=convert.job(job))

    @_stream
    async def WatchJob(  # noqa: N802
            self, request: pb.WatchJobRequest, context: Context,
    ) -> AsyncIterator[pb.WatchJobResponse | bytes]:
        job_id = await self._job_id(request.job_id)
        async for item in follow_job(self.engine.store, self.broker, job_id, request.after_seq,
                                     self.heartbeat_s, decoded=False):
            if isinstance(item, Event):
                # The bytes made at commit, behind the response's header: no message per watcher.
                yield wire.watch_response(item.wire or wire.encode(item))
            elif isinstance(item, Snapshot):
                yield self._snapshot_bytes(item.job)
            elif isinstance(item, Heartbeat):
                yield pb.WatchJobResponse(heartbeat=_heartbeat(item))

    @_stream
    async def WatchJobs(  # noqa: N802
            self, request: pb.WatchJobsRequest, context: Context) -> AsyncIterator[pb.WatchJobsResponse]:
        if request.limit > MAX_PAGE:
            raise invalid("limit", f"must be at most {MAX_PAGE}")
        async for item in follow_jobs(self.engine.store, self.broker,
                                      request.limit or DEFAULT_FEED, self.heartbeat_s):
            if isinstance(item, JobsSnapshot):
                yield pb.WatchJobsResponse(snapshot=pb.JobsSnapshot(
                    jobs=[_bounded_header(j) for j in item.jobs]))
            elif isinstance(item, Heartbeat):
                yield pb.WatchJobsResponse(heartbeat=_heartbeat(item))
            elif isinstance(item, Deleted):
                yield pb.WatchJobsResponse(job_deleted=item.job_id)
            else:
                yield pb.WatchJobsResponse(job_changed=_bounded_header(item))


    @_rpc
    async def ListChildren(  # noqa: N802
            self, request: pb.ListChildrenRequest, context: Context) -> pb.ListChildrenResponse:
        _, step, attempt = await self._step(request)
        size = _page_size(request.page_size, DEFAULT_CHILDREN)
        status = _enum_value(ChildStatus, request.status, "status")
        order = request.order
        if order not in (pb.CHILD_ORDER_UNSPECIFIED, pb.CHILD_ORDER_INDEX, pb.CHILD_ORDER_FAILED_FIRST):
            raise invalid("order", f"unknown ChildOrder value {order}")
        scope = f"children {step.step_id} {attempt} {request.status} {order}"
        tokens = await self._tokens()
        after = _phase_index(tokens.open(request.page_token, scope))
        children, last = await self.engine.store.list_children(
            step.step_id, attempt, status, order == pb.CHILD_ORDER_FAILED_FIRST, size, after)
        return pb.ListChildrenResponse(
            children=[convert.child(c) for c in children], attempt=attempt,
            next_page_token="" if last is None else tokens.sign(scope, f"{last[0]} {last[1]}"))

    @_stream
    async def WatchLogs(  # noqa: N802
            self, request: pb.WatchLogsRequest, context: Context) -> AsyncIterator[pb.WatchLogsResponse]:
        _, step, attempt = await self._step(request)
        child = request.child_index if request.HasField("child_index") else None
        async for item in follow_logs(self.engine.store, self.broker, step.step_id, attempt,
                                      child, request.after_offset, self.heartbeat_s):
            if isinstance(item, Heartbeat):
                yield pb.WatchLogsResponse(heartbeat=_heartbeat(item))
            else:
                yield pb.WatchLogsResponse(chunk=convert.log_chunk(item))

    @_rpc
    async def DeleteJob(  # noqa: N802
            self, request: pb.DeleteJobRequest, context: Context) -> pb.DeleteJobResponse:
        job_id = await self._job_id(request.job_id)
        await self.engine.store.delete_job(job_id)
        return pb.DeleteJobResponse(job_id=job_id)

    @_rpc
    async def RerunJob(  # noqa: N802
            self, request: pb.RerunJobRequest, context: Context) -> pb.RerunJobResponse:
        job_id = await self._job_id(request.job_id)
        caller = self.auth.caller(context.invocation_metadata())
        key = self._request_key(caller, request.request_id, "rerun", job_id,
                                str(request.failed_only))
        job = await self.engine.rerun(job_id, request.failed_only, key,
                                      may_run_inline=caller.role >= Role.ADMIN)
        return pb.RerunJobResponse(job=convert.job(job))

    @_rpc
    async def ListDocuments(  # noqa: N802
            self, request: pb.ListDocumentsRequest, context: Context) -> pb.ListDocumentsResponse:
        job_id = await self._job_id(request.job_id)
        size = _page_size(request.page_size, DEFAULT_CHILDREN)
        if len(request.tags) > 100 or any(len(t) > MAX_ID for t in request.tags):
            raise invalid("tags", f"at most 100 tags of at most {MAX_ID} characters")
        scope = f"documents {job_id} {hashlib.sha256(chr(0).join(request.tags).encode()).hexdigest()}"
        tokens = await self._tokens()
        after = tokens.open(request.page_token, scope)
        docs, last = await self.engine.store.list_documents(job_id, list(request.tags), size, after)
        return pb.ListDocumentsResponse(
            documents=[convert.document(d) for d in docs],
            next_page_token="" if last is None else tokens.sign(scope, last))

def _heartbeat(h: Heartbeat) -> pb.Heartbeat:
    return pb.Heartbeat(head_seq=h.head_seq, at=convert.timestamp(h.at_us))


def _page_size(size: int, default: int) -> int:
    if size > MAX_PAGE:
        raise invalid("page_size", f"must be at most {MAX_PAGE}")
    return size or default


def _enum_value(enum: Any, value: int, field: str) -> Any:
    if not value:
        return None
    try:
        return enum(value)
    except ValueError:
        raise invalid(field, f"unknown {enum.__name__} value {value}") from None


def _phase_index(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    phase, _, index = value.partition(" ")
    return int(phase), int(index)  # signed by us: well-formed


def _micros(request: Any, field: str) -> int | None:
    if not request.HasField(field):
        return None
    ts = getattr(request, field)
    if not -62135596800 <= ts.seconds <= 253402300799 or not 0 <= ts.nanos < 10**9:
        raise invalid(field, "is not a valid timestamp")
    return int(ts.ToMicroseconds())
