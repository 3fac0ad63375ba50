"""The fan-out reference: a bare grpc.aio server (its own process) that pushes given event
bytes to every open WatchJob stream at a fixed rate, each encoded once, stamped when sent.

argv: EVENTS_FILE (length-prefixed JobEvent bytes) RATE STREAMS"""

from __future__ import annotations

import asyncio
import struct
import sys
import time

from bench.bare import passthrough_server, serve_announced
from orchestrator_service.codec import watch_response
from stepwatch.v1 import orchestrator_pb2 as pb


def read_events(path: str) -> list[pb.JobEvent]:
    data, out, i = open(path, "rb").read(), [], 0
    while i < len(data):
        (n,) = struct.unpack_from(">I", data, i)
        out.append(pb.JobEvent.FromString(data[i + 4:i + 4 + n]))
        i += 4 + n
    return out


async def main(path: str, rate: float, streams: int) -> None:
    events = read_events(path)
    queues: list[asyncio.Queue[bytes | None]] = []
    everyone = asyncio.Event()
    snapshot = pb.WatchJobResponse(snapshot=pb.JobSnapshot(seq=0)).SerializeToString()

    async def watch(request: pb.WatchJobRequest, context: object):  # type: ignore[no-untyped-def]
        q: asyncio.Queue[bytes | None] = asyncio.Queue()
        queues.append(q)
        if len(queues) == streams:
            everyone.set()
        yield snapshot
        while (item := await q.get()) is not None:
            yield item

    server = passthrough_server(watch_job=watch)
    await serve_announced(server)
    await everyone.wait()
    # The parent says go once every client process has every stream open.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start = time.monotonic()
    for n, ev in enumerate(events):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        ev.emitted_at.FromNanoseconds(time.time_ns())
        data = watch_response(ev.SerializeToString())  # once per event, for every stream
        for q in queues:
            q.put_nowait(data)
    for q in queues:
        q.put_nowait(None)
    await server.stop(30)  # the streams drain what they were sent, then end


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
