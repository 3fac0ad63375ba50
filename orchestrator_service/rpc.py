"""The servicer's edge: requests decoded safely, every error mapped to a status in one place.

A domain error is a ``ServerError`` (problems.py), mapped by ``errors.from_server_error``;
anything else is a bug and answers INTERNAL with an id that is in the server log, never
UNKNOWN. A request whose bytes do not decode answers INVALID_ARGUMENT, not the library's
UNKNOWN; ids and names are checked once, here (``bounded_id``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from stepwatch.v1 import orchestrator_pb2 as pb

from .definitions import clip
from .errors import RpcError, from_server_error, invalid
from .problems import ServerError
from .streams import StreamRevoked

__all__ = ["MAX_ID", "add_to_server", "bounded_id", "rpc", "stream"]

log = logging.getLogger("orchestrator_service.service")
MAX_ID = 200  # characters of a job id, request id, step reference or name prefix


def bounded_id(field: str, value: str, *, required: bool = False, what: str = "") -> str:
    """An id or name from a request: present if required, at most MAX_ID characters."""
    if required and not value:
        raise invalid(field, f"is required: {what}" if what else "is required")
    if len(value) > MAX_ID:
        raise invalid(field, f"is {len(value)} characters; at most {MAX_ID}")
    return value


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


def rpc(method: Callable[[Any, Any, Any], Awaitable[Any]]) -> Callable[[Any, Any, Any], Awaitable[Any]]:
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


def stream(method: Callable[[Any, Any, Any], AsyncIterator[Any]],
            ) -> Callable[[Any, Any, Any], AsyncIterator[Any]]:
    """Server-streaming wrapper: RpcError -> abort with its status. A method may yield a
    list of responses (a page of a replay): they are sent one by one from here, so a page
    costs one step of the method's generators, not one per response."""

    async def wrapper(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            _check_decoded(request)
            with _errors():  # checked by the interceptor; a reload since may refuse it now
                caller = self.auth.caller(context.invocation_metadata())
            with _errors(), self.streams.opened(caller.key) as stream, \
                    self.metrics.watching(method.__name__):
                if stream is None:
                    async for item in method(self, request, context):
                        if type(item) is list:
                            for one in item:
                                yield one
                        else:
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
                    for one in item if type(item) is list else (item,):
                        yield one
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


def add_to_server(servicer: Any, server: grpc.aio.Server) -> None:
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


