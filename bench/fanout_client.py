"""One client process of the fan-out bench: N WatchJob streams on one channel each group.

Prints "ready" once every stream has its first message, then records for each event the
time from its emitted_at to its receipt; writes the delays (float32 ms) and, per stream,
its counts, how long after the streams were opened its snapshot came, and when (wall clock,
ms) its first and last events came, once every stream has ended."""

from __future__ import annotations

import array
import asyncio
import json
import sys
import time

import grpc

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

CHANNELS = 8  # streams spread over a few connections, as many real clients would be


async def main(target: str, job_id: str, n: int, out: str) -> None:
    channels = [grpc.aio.insecure_channel(target) for _ in range(min(CHANNELS, n))]
    delays = array.array("f")
    counts: list[dict[str, int]] = []
    first = asyncio.Event()
    opened = [0]

    async def one(i: int) -> None:
        stub = pb_grpc.OrchestratorServiceStub(channels[i % len(channels)])
        snap, got, last = 0, 0, 0
        snap_ms = first_rx = last_rx = 0.0
        async for r in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=600):
            kind = r.WhichOneof("kind")
            if kind == "snapshot":
                snap = last = r.snapshot.seq
                snap_ms = time.time_ns() / 1e6 - opened_at
                opened[0] += 1
                if opened[0] == n:
                    first.set()
            elif kind == "event":
                now = time.time_ns() / 1e6
                delays.append(now - r.event.emitted_at.ToMilliseconds())
                got += 1
                last = r.event.seq
                first_rx = first_rx or now
                last_rx = now
        counts.append({"snapshot": snap, "events": got, "last": last, "snap_ms": snap_ms,
                       "first_rx": first_rx, "last_rx": last_rx})

    opened_at = time.time_ns() / 1e6
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await first.wait()
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    with open(out + ".bin", "wb") as f:
        delays.tofile(f)
    with open(out + ".json", "w") as f:
        json.dump(counts, f)
    for ch in channels:
        await ch.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
