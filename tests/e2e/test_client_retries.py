"""The client rides out a server that loses answers or cancels new streams."""

from __future__ import annotations

import grpc

from stepwatch.client import Backoff, Client
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc


class Flaky(pb_grpc.OrchestratorServiceServicer):
    """Loses the first SubmitJob answer; cancels the first two WatchJob streams."""

    def __init__(self) -> None:
        self.request_ids: list[str] = []
        self.watches = 0

    async def SubmitJob(self, request, context):  # noqa: N802
        self.request_ids.append(request.request_id)
        if len(self.request_ids) == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the answer was lost")
        return pb.SubmitJobResponse(job=pb.Job(job_id="j1"))

    async def WatchJob(self, request, context):  # noqa: N802
        self.watches += 1
        if self.watches <= 2:
            await context.abort(grpc.StatusCode.CANCELLED, "too busy for a new stream")
        yield pb.WatchJobResponse(snapshot=pb.JobSnapshot(job=pb.Job(job_id="j1"), seq=3))


async def test_submit_retries_under_one_request_id_and_watch_retries_cancelled() -> None:
    flaky = Flaky()
    server = grpc.aio.server()
    pb_grpc.add_OrchestratorServiceServicer_to_server(flaky, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with Client(f"127.0.0.1:{port}") as client:
            job = await client.submit(definition_toml="x", backoff=Backoff(0.01, 0.05, max_tries=3))
            got = [m async for m in client.watch("j1", backoff=Backoff(0.01, 0.05))]
    finally:
        await server.stop(None)
    assert job.job_id == "j1"
    assert len(flaky.request_ids) == 2 and flaky.request_ids[0] == flaky.request_ids[1] != ""
    assert flaky.watches == 3 and got[0].snapshot.seq == 3
