"""The bare references' one server: grpc.aio with our service's methods answered by given
handlers, whose responses are bytes serialized beforehand (a pass-through serializer), so
what is measured is grpc's own path and nothing of ours."""

from __future__ import annotations

from typing import Any

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb

SERVICE = "stepwatch.v1.OrchestratorService"


def passthrough_server(*, get_job: Any = None, watch_job: Any = None) -> grpc.aio.Server:
    """``get_job(request, context) -> bytes`` and/or ``watch_job(request, context)``, an async
    generator of bytes."""
    methods: dict[str, grpc.RpcMethodHandler] = {}
    if get_job is not None:
        methods["GetJob"] = grpc.unary_unary_rpc_method_handler(
            get_job, request_deserializer=pb.GetJobRequest.FromString,
            response_serializer=lambda b: b)
    if watch_job is not None:
        methods["WatchJob"] = grpc.unary_stream_rpc_method_handler(
            watch_job, request_deserializer=pb.WatchJobRequest.FromString,
            response_serializer=lambda b: b)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
    return server


async def serve_announced(server: grpc.aio.Server) -> None:
    """Start ``server`` on a free port of 127.0.0.1 and print ``listening on HOST:PORT``
    (the parent process reads its address from that line)."""
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)


def announced(line: str) -> str:
    """The address in a bare server's first line (``serve_announced``)."""
    if not line.startswith("listening on "):
        raise RuntimeError(f"the bare server did not start: {line!r}")
    return line.split()[-1]
