"""The GetJob reference under load: a bare grpc.aio server (its own process) answering
GetJob with given bytes, encoded once. Polled next to Stepwatch while a big job runs, it is
what this machine gives any Python gRPC server at that moment, with no orchestration.

argv: RESPONSE_FILE (a serialized GetJobResponse). Prints ``listening on HOST:PORT``."""

from __future__ import annotations

import asyncio
import sys

from bench.bare import passthrough_server, serve_announced
from stepwatch.v1 import orchestrator_pb2 as pb


async def main(path: str) -> None:
    data = open(path, "rb").read()

    async def get_job(request: pb.GetJobRequest, context: object) -> bytes:
        return data

    server = passthrough_server(get_job=get_job)
    await serve_announced(server)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
