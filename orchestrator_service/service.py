"""gRPC servicer: thin translation between proto and the engine/store.

Each method checks its arguments, calls one domain function, and converts the
answer; domain exceptions become status codes in ``_errors``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

from . import codec
from .auth import Authenticator, Caller, Role
from .automation_rpc import AutomationRpcs
from .broker import Broker, Deleted
from .catalog import Catalog, Entry
from .codec import Framed
from .definitions import clip, parse_definition
from .engine import Engine
from .errors import RpcError, invalid
from .eventcache import EventCache
from .metrics import Metrics
from .model import Event, JobState, StepState
from .pagetokens import PageTokens
from .rpc import bounded_id, rpc, stream
from .scheduler import Scheduler
from .snapshots import JobSnapshots
from .statuses import ChildStatus, JobStatus
from .store import RequestKey, Store
from .streams import StreamBook
from .watch import (
    EncodedSnapshot,
    Heartbeat,
    JobsSnapshot,
    Snapshot,
    follow_job_pages,
    follow_jobs,
    follow_logs,
)
from .webhooks import WebhookPolicy

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
MAX_PAGE = 1000
HEADER_TEXT = 1024  # characters of a description or failure in a list or feed
DEFAULT_PAGE = 50
DEFAULT_FEED = 100
DEFAULT_CHILDREN = 100


def _bounded_header(job: JobState) -> pb.Job:
    """A job header for a list or feed: long texts clipped so any page fits in a message."""
    msg = codec.job(job)
    if len(msg.description) > HEADER_TEXT:
        msg.description = clip(msg.description, HEADER_TEXT)
    if len(msg.failure.message) > HEADER_TEXT:
        msg.failure.message = clip(msg.failure.message, HEADER_TEXT)
    return msg


class OrchestratorServicer(AutomationRpcs, pb_grpc.OrchestratorServiceServicer):
    """Commands go to the engine (submit, cancel, rerun) and the store's writes (delete);
    queries to the store's reads; watches follow the broker and the store's log. Schedules
    and webhooks: automation_rpc.py."""

    def __init__(self, engine: Engine, store: Store, catalog: Catalog, broker: Broker,
                 heartbeat_s: float, auth: Authenticator | None = None,
                 metrics: Metrics | None = None, streams: StreamBook | None = None,
                 scheduler: Scheduler | None = None,
                 webhook_policy: WebhookPolicy | None = None) -> None:
        self.scheduler = scheduler or Scheduler(engine, catalog)
        self.webhook_policy = webhook_policy or WebhookPolicy()
        self.engine = engine
        self.store = store
        self.reads = store.reads
        self.auth = auth or Authenticator(None)
        self.streams = streams or StreamBook(0)
        self.metrics = metrics or Metrics()
        self.catalog = catalog
        self.broker = broker
        self.heartbeat_s = heartbeat_s
        self.snapshots = JobSnapshots(store, broker)
        self.event_cache = EventCache()
        self.tokens: PageTokens | None = None

    @staticmethod
    def _request_key(caller: Caller, request_id: str, *asked: str) -> RequestKey | None:
        """A request id scoped to its caller, and bound to what the request asks."""
        if not request_id:
            return None
        bounded_id("request_id", request_id)
        key = hashlib.sha256(f"{caller.scope}\0{request_id}".encode()).hexdigest()
        return RequestKey(key, hashlib.sha256("\0".join(asked).encode()).hexdigest())

    async def _job_id(self, ref: str) -> str:
        """The job's full id, from itself or a unique prefix of 8 or more characters (a whole
        id that the snapshot cache holds needs no read: an exact id wins over any prefix)."""
        bounded_id("job_id", ref, required=True)
        if self.snapshots.holds(ref):
            return ref
        return await self.reads.resolve_job_id(ref)

    async def _step(self, request: Any) -> tuple[str, StepState, int]:
        """(job_id, step, attempt) named by a request with job_id, step, attempt (0 = latest)."""
        job_id = await self._job_id(request.job_id)
        bounded_id("step", request.step, required=True, what="a step_id or a step name")
        step = await self.reads.find_step(job_id, request.step)
        # A step that has not started yet is followed from its first attempt.
        latest = max(step.attempt, 1)
        attempt = request.attempt or latest
        if attempt > latest:
            raise RpcError(grpc.StatusCode.NOT_FOUND,
                           f"step {step.name!r} has no attempt {attempt} (it is at {step.attempt})")
        return job_id, step, attempt

    async def _tokens(self) -> PageTokens:
        if self.tokens is None:
            self.tokens = PageTokens(await self.store.writes.page_secret())
        return self.tokens

    @rpc
    async def ListJobDefinitions(  # noqa: N802
            self, request: pb.ListJobDefinitionsRequest, context: Context) -> pb.ListJobDefinitionsResponse:
        entries = sorted(self.catalog.entries().items())
        return pb.ListJobDefinitionsResponse(definitions=[
            codec.definition_info(e.definition) if isinstance(e, Entry)
            else pb.JobDefinitionInfo(name=name, error=clip(str(e.error), 2000))
            for name, e in entries])

    @rpc
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
            definition = await asyncio.to_thread(parse_definition, text, self.engine.config.step_types,
                                                 self.engine.config.run.limits)
        else:
            raise invalid("source", "set definition_name or definition_toml")
        given = codec.input_values(request.inputs)
        key = self._request_key(self.auth.caller(context.invocation_metadata()),
                                request.request_id, "submit", source,
                                request.definition_name or request.definition_toml,
                                *_digest_of(given))
        job = await self.engine.submit(definition, text, key,
                                       "catalog" if source == "definition_name" else "inline",
                                       given)
        return pb.SubmitJobResponse(job=codec.job(job))

    @rpc
    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:  # noqa: N802
        job = await self.snapshots.get(await self._job_id(request.job_id))
        return pb.GetJobResponse(job=job)

    @rpc
    async def ListJobs(  # noqa: N802
            self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        size = _page_size(request.page_size, DEFAULT_PAGE)
        status = _enum_value(JobStatus, request.status, "status")
        bounded_id("name_prefix", request.name_prefix)
        created = (_micros(request, "created_after"), _micros(request, "created_before"))
        scope = f"jobs {request.status} {request.name_prefix!r} {created[0]} {created[1]}"
        tokens = await self._tokens()
        after = tokens.open(request.page_token, scope)
        if after is not None and not (after.isdigit() and 0 < int(after) < 2**63):
            raise invalid("page_token", "is not a token this server issued")
        jobs, last = await self.reads.list_jobs(
            size, None if after is None else int(after), status, request.name_prefix, created)
        return pb.ListJobsResponse(jobs=[_bounded_header(j) for j in jobs],
                                   next_page_token="" if last is None else tokens.sign(scope, str(last)))

    @rpc
    async def CancelJob(  # noqa: N802
            self, request: pb.CancelJobRequest, context: Context) -> pb.CancelJobResponse:
        job = await self.engine.cancel(await self._job_id(request.job_id))
        return pb.CancelJobResponse(job=codec.job(job))

    @stream
    async def WatchJob(  # noqa: N802
            self, request: pb.WatchJobRequest, context: Context,
    ) -> AsyncIterator[list[pb.WatchJobResponse | bytes]]:
        job_id = await self._job_id(request.job_id)
        async for page in follow_job_pages(self.store, self.broker, job_id, request.after_seq,
                                           self.heartbeat_s, decoded=False,
                                           snapshot_of=self.snapshots.watch_snapshot,
                                           cache=self.event_cache):
            yield [self._watch_response(item) for item in page]

    @staticmethod
    def _watch_response(item: Snapshot | EncodedSnapshot | Event | Framed | Heartbeat,
                        ) -> pb.WatchJobResponse | bytes:
        if isinstance(item, Framed):  # most of a replay: bytes framed on the reader's thread
            return item.response
        if isinstance(item, Event):
            # The response made at commit (one for all watchers), or one framed from the
            # event's bytes (an event read back from the log).
            return item.response or codec.watch_response(item.wire or codec.encode(item))
        if isinstance(item, EncodedSnapshot):  # from the snapshot cache, encoded once a head
            return item.response
        assert not isinstance(item, Snapshot)  # a decoded snapshot only without snapshot_of
        return pb.WatchJobResponse(heartbeat=_heartbeat(item))

    @stream
    async def WatchJobs(  # noqa: N802
            self, request: pb.WatchJobsRequest, context: Context) -> AsyncIterator[pb.WatchJobsResponse]:
        if request.limit > MAX_PAGE:
            raise invalid("limit", f"must be at most {MAX_PAGE}")
        async for item in follow_jobs(self.store, self.broker,
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


    @rpc
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
        children, last = await self.reads.list_children(
            step.step_id, attempt, status, order == pb.CHILD_ORDER_FAILED_FIRST, size, after)
        return pb.ListChildrenResponse(
            children=[codec.child(c) for c in children], attempt=attempt,
            next_page_token="" if last is None else tokens.sign(scope, f"{last[0]} {last[1]}"))

    @stream
    async def WatchLogs(  # noqa: N802
            self, request: pb.WatchLogsRequest, context: Context) -> AsyncIterator[pb.WatchLogsResponse]:
        _, step, attempt = await self._step(request)
        child = request.child_index if request.HasField("child_index") else None
        async for item in follow_logs(self.store, self.broker, step.step_id, attempt,
                                      child, request.after_offset, self.heartbeat_s):
            if isinstance(item, Heartbeat):
                yield pb.WatchLogsResponse(heartbeat=_heartbeat(item))
            else:
                yield pb.WatchLogsResponse(chunk=codec.log_chunk(item))

    @rpc
    async def DeleteJob(  # noqa: N802
            self, request: pb.DeleteJobRequest, context: Context) -> pb.DeleteJobResponse:
        job_id = await self._job_id(request.job_id)
        await self.store.writes.delete_job(job_id)
        return pb.DeleteJobResponse(job_id=job_id)

    @rpc
    async def RerunJob(  # noqa: N802
            self, request: pb.RerunJobRequest, context: Context) -> pb.RerunJobResponse:
        job_id = await self._job_id(request.job_id)
        caller = self.auth.caller(context.invocation_metadata())
        given = codec.input_values(request.inputs)
        key = self._request_key(caller, request.request_id, "rerun", job_id,
                                str(request.failed_only), *_digest_of(given))
        job = await self.engine.rerun(job_id, request.failed_only, key,
                                      may_run_inline=caller.role >= Role.ADMIN, inputs=given)
        return pb.RerunJobResponse(job=codec.job(job))

    @rpc
    async def ListDocuments(  # noqa: N802
            self, request: pb.ListDocumentsRequest, context: Context) -> pb.ListDocumentsResponse:
        job_id = await self._job_id(request.job_id)
        size = _page_size(request.page_size, DEFAULT_CHILDREN)
        if len(request.tags) > 100:
            raise invalid("tags", "at most 100 tags")
        for t in request.tags:
            bounded_id("tags", t)
        scope = f"documents {job_id} {hashlib.sha256(chr(0).join(request.tags).encode()).hexdigest()}"
        tokens = await self._tokens()
        after = tokens.open(request.page_token, scope)
        docs, last = await self.reads.list_documents(job_id, list(request.tags), size, after)
        return pb.ListDocumentsResponse(
            documents=[codec.document(d) for d in docs],
            next_page_token="" if last is None else tokens.sign(scope, last))

def _digest_of(inputs: dict[str, Any]) -> list[str]:
    """What a request's inputs add to its request-id digest (nothing when it has none, so
    keys of requests without inputs read as before)."""
    return [json.dumps(inputs, sort_keys=True)] if inputs else []


def _heartbeat(h: Heartbeat) -> pb.Heartbeat:
    return pb.Heartbeat(head_seq=h.head_seq, at=codec.timestamp(h.at_us))


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
