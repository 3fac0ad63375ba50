"""gRPC servicer: thin translation between proto and the engine/store.

Each method checks its arguments, calls one domain function, and converts the
answer; domain exceptions become status codes in ``_errors``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

from . import convert
from .broker import Broker, BrokerClosed
from .catalog import Catalog, DefinitionNotFound
from .definitions import DefinitionError, parse_definition
from .engine import Engine, JobAlreadyFinished
from .errors import RpcError, invalid
from .model import Event
from .snapshots import JobSnapshots
from .statuses import JobStatus
from .store import JobNotFound
from .watch import AfterSeqOutOfRange, Heartbeat, JobsSnapshot, Snapshot, follow_job, follow_jobs

MAX_PAGE = 1000
DEFAULT_PAGE = 50
DEFAULT_FEED = 100


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except JobNotFound as exc:
        raise RpcError(grpc.StatusCode.NOT_FOUND, f"job {exc.args[0]!r} not found") from None
    except DefinitionNotFound as exc:
        raise RpcError(grpc.StatusCode.NOT_FOUND,
                       f"definition {exc.args[0]!r} not found in the definitions folder") from None
    except DefinitionError as exc:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid job definition: {exc}",
                       exc.violations) from None
    except JobAlreadyFinished as exc:
        raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
    except AfterSeqOutOfRange as exc:
        raise RpcError(grpc.StatusCode.OUT_OF_RANGE, str(exc)) from None
    except BrokerClosed:
        raise RpcError(grpc.StatusCode.UNAVAILABLE,
                       "server is shutting down; resume with after_seq = the last seq received") from None


def _rpc(method: Callable[[Any, Any, Any], Awaitable[Any]]) -> Callable[[Any, Any, Any], Awaitable[Any]]:
    """Unary method wrapper: RpcError -> abort with its status."""

    async def wrapper(self: Any, request: Any, context: Any) -> Any:
        try:
            with _errors():
                return await method(self, request, context)
        except RpcError as err:
            await context.abort_with_status(err.to_status())

    wrapper.__name__ = method.__name__
    return wrapper


def _stream(method: Callable[[Any, Any, Any], AsyncIterator[Any]],
            ) -> Callable[[Any, Any, Any], AsyncIterator[Any]]:
    """Server-streaming wrapper: RpcError -> abort with its status."""

    async def wrapper(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            with _errors():
                async for item in method(self, request, context):
                    yield item
        except RpcError as err:
            await context.abort_with_status(err.to_status())

    wrapper.__name__ = method.__name__
    return wrapper


def _require_job_id(job_id: str) -> str:
    if not job_id:
        raise invalid("job_id", "is required")
    return job_id


def _page_token(last_id: int | None) -> str:
    return "" if last_id is None else base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode()


def _parse_page_token(token: str) -> int | None:
    if not token:
        return None
    try:
        version, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if version != "v1":
            raise ValueError(version)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid("page_token", "is not a token this server issued") from None


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    def __init__(self, engine: Engine, catalog: Catalog, broker: Broker, heartbeat_s: float) -> None:
        self.engine = engine
        self.catalog = catalog
        self.broker = broker
        self.heartbeat_s = heartbeat_s
        self.snapshots = JobSnapshots(engine.store)

    @_rpc
    async def ListJobDefinitions(self, request, context):  # noqa: N802
        entries = sorted(self.catalog.entries().values(), key=lambda e: e.definition.name)
        return pb.ListJobDefinitionsResponse(
            definitions=[convert.definition_info(e.definition) for e in entries])

    @_rpc
    async def SubmitJob(self, request, context):  # noqa: N802
        source = request.WhichOneof("source")
        if source == "definition_name":
            entry = self.catalog.get(request.definition_name)
            definition, text = entry.definition, entry.source
        elif source == "definition_toml":
            text = request.definition_toml
            # A thread: a big definition takes a while to check, and the loop serves everyone.
            definition = await asyncio.to_thread(parse_definition, text, self.engine.step_types)
        else:
            raise invalid("source", "set definition_name or definition_toml")
        job = await self.engine.submit(definition, text)
        return pb.SubmitJobResponse(job=convert.job(job))

    @_rpc
    async def GetJob(self, request, context):  # noqa: N802
        job = await self.snapshots.get(_require_job_id(request.job_id))
        return pb.GetJobResponse(job=job)

    @_rpc
    async def ListJobs(self, request, context):  # noqa: N802
        if request.page_size > MAX_PAGE:
            raise invalid("page_size", f"must be at most {MAX_PAGE}")
        status = None
        if request.status:
            try:
                status = JobStatus(request.status)
            except ValueError:
                raise invalid("status", f"unknown JobStatus value {request.status}") from None
        jobs, last = await self.engine.store.list_jobs(
            request.page_size or DEFAULT_PAGE, _parse_page_token(request.page_token), status)
        return pb.ListJobsResponse(jobs=[convert.job(j) for j in jobs],
                                   next_page_token=_page_token(last))

    @_rpc
    async def CancelJob(self, request, context):  # noqa: N802
        job = await self.engine.cancel(_require_job_id(request.job_id))
        return pb.CancelJobResponse(job=convert.job(job))

    @_stream
    async def WatchJob(self, request, context) -> AsyncIterator[pb.WatchJobResponse]:  # noqa: N802
        job_id = _require_job_id(request.job_id)
        async for item in follow_job(self.engine.store, self.broker, job_id, request.after_seq,
                                     self.heartbeat_s):
            if isinstance(item, Event):
                yield pb.WatchJobResponse(event=convert.event(item))
            elif isinstance(item, Snapshot):
                yield pb.WatchJobResponse(snapshot=pb.JobSnapshot(
                    job=convert.job(item.job), seq=item.job.head_seq))
            elif isinstance(item, Heartbeat):
                yield pb.WatchJobResponse(heartbeat=_heartbeat(item))

    @_stream
    async def WatchJobs(self, request, context) -> AsyncIterator[pb.WatchJobsResponse]:  # noqa: N802
        if request.limit > MAX_PAGE:
            raise invalid("limit", f"must be at most {MAX_PAGE}")
        async for item in follow_jobs(self.engine.store, self.broker,
                                      request.limit or DEFAULT_FEED, self.heartbeat_s):
            if isinstance(item, JobsSnapshot):
                yield pb.WatchJobsResponse(snapshot=pb.JobsSnapshot(
                    jobs=[convert.job(j) for j in item.jobs]))
            elif isinstance(item, Heartbeat):
                yield pb.WatchJobsResponse(heartbeat=_heartbeat(item))
            else:
                yield pb.WatchJobsResponse(job_changed=convert.job(item))


def _heartbeat(h: Heartbeat) -> pb.Heartbeat:
    return pb.Heartbeat(head_seq=h.head_seq, at=convert.timestamp(h.at_us))
