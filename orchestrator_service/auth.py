"""Who may call what: bearer tokens from a token file, three roles, one interceptor.

The token file has one ``role token-sha256 name`` a line (``#`` comments); only hashes are
stored, and the file is read again on SIGHUP. Roles grow: a viewer reads (Get/List/Watch),
an operator also submits catalog definitions, cancels and reruns, an admin also submits
inline definitions and deletes jobs. Health stays open (probes carry no token); reflection
needs a viewer. Without a token file every caller is an admin: the loopback development
default, which the server refuses on any other address unless told --insecure-no-auth.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from stepwatch.secretfile import read_secret_file
from stepwatch.tokens import digest

from .errors import grpc_code
from .problems import Code, ServerError

__all__ = ["METHOD_ROLES", "AuthError", "AuthInterceptor", "Authenticator", "Caller", "Role",
           "TokenFile"]

log = logging.getLogger(__name__)
SERVICE = "/stepwatch.v1.OrchestratorService/"


class Role(enum.IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


# The least role each method needs; a method not listed (and not open) is refused.
METHOD_ROLES: dict[str, Role] = {
    **{SERVICE + m: Role.VIEWER for m in (
        "ListJobDefinitions", "GetJob", "ListJobs", "WatchJob", "WatchJobs", "ListChildren",
        "WatchLogs", "ListDocuments", "ListSchedules", "GetSchedule", "ListSubscriptions",
        "ListDeliveries")},
    **{SERVICE + m: Role.OPERATOR for m in ("SubmitJob", "CancelJob", "RerunJob")},
    # Schedules and webhooks run and call things on their own: an admin's to change.
    **{SERVICE + m: Role.ADMIN for m in (
        "DeleteJob", "CreateSchedule", "PauseSchedule", "ResumeSchedule", "DeleteSchedule",
        "TriggerSchedule", "CreateSubscription", "DeleteSubscription")},
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Role.VIEWER,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Role.VIEWER,
}
OPEN = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


class AuthError(ServerError):
    """Who the caller is, or what it may do, refuses the call (the code says which)."""

    def __init__(self, kind: Code, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def status_code(self) -> Code:
        return self.kind


@dataclass(frozen=True)
class Caller:
    role: Role
    name: str
    key: str | None = None  # the token's SHA-256: who owns a stream, a request id, a job

    @property
    def scope(self) -> str:
        """Whose request ids these are: one token's, or everyone's without auth."""
        return self.key or "anyone"


ANYONE = Caller(Role.ADMIN, "anyone (no --auth-token-file)")


class TokenFile:
    """The token file, parsed; ``reload`` reads it again (SIGHUP), keeping the old set when
    the new file does not parse."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_digest: dict[str, Caller] = {}
        self.reload()

    @property
    def keys(self) -> set[str]:
        return set(self._by_digest)

    def reload(self) -> None:
        entries: dict[str, Caller] = {}
        for n, raw in enumerate(read_secret_file(self.path).splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split(None, 2)
            if len(parts) < 3 or parts[0].upper() not in Role.__members__ or len(parts[1]) != 64:
                raise ValueError(f"{self.path}:{n}: expected 'ROLE TOKEN-SHA256 NAME' with ROLE "
                                 "one of viewer, operator, admin")
            entries[parts[1].lower()] = Caller(Role[parts[0].upper()], parts[2], parts[1].lower())
        self._by_digest = entries
        log.info("auth: %d tokens from %s", len(entries), self.path)

    def caller(self, token: str) -> Caller | None:
        hashed = digest(token)
        for known, caller in self._by_digest.items():  # constant time per entry
            if hmac.compare_digest(known, hashed):
                return caller
        return None


class Authenticator:
    """Resolves a call's metadata to a Caller, or says why not."""

    def __init__(self, tokens: TokenFile | None) -> None:
        self.tokens = tokens

    def caller(self, metadata: Iterable[tuple[str, Any]] | None) -> Caller:
        if self.tokens is None:
            return ANYONE
        header = next((str(v) for k, v in metadata or () if k == "authorization"), "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(Code.UNAUTHENTICATED,
                            "a token is required: send 'authorization: Bearer <token>'")
        found = self.tokens.caller(token.strip())
        if found is None:
            raise AuthError(Code.UNAUTHENTICATED, "unknown token")
        return found

    def require(self, metadata: Iterable[tuple[str, Any]] | None, role: Role,
                what: str) -> Caller:
        caller = self.caller(metadata)
        if caller.role < role:
            raise AuthError(Code.PERMISSION_DENIED,
                            f"{what} needs the {role.label} role; {caller.name} is "
                            f"{caller.role.label}")
        return caller


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks every call's token against the method's role before the method runs."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
            details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        method = details.method
        if method in OPEN or handler is None:
            return handler
        role = METHOD_ROLES.get(method, Role.ADMIN)
        try:
            self.auth.require(details.invocation_metadata, role, method.rsplit("/", 1)[-1])
        except AuthError as err:
            return _refusal(handler, err)
        return handler


def _refusal(handler: Any, err: AuthError) -> Any:
    """A handler of the same shape as ``handler`` that answers the error."""
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc_code(err.status_code), err.message)

    async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc_code(err.status_code), err.message)
        yield  # pragma: no cover - makes this an async generator

    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream, **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, **kw)
    return grpc.stream_stream_rpc_method_handler(stream, **kw)
