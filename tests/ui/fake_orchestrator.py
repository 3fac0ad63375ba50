"""A scripted orchestrator: a real grpc.aio server serving canned streams."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc


@dataclass
class Abort:
    """End the stream with an error; UNAVAILABLE is what a dying server looks like."""

    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    message: str = "scripted break"


@dataclass
class Hold:
    """Send nothing until the test releases this."""

    release: asyncio.Event = field(default_factory=asyncio.Event)


Script = list[pb.WatchJobResponse | pb.WatchJobsResponse | Abort | Hold]


class FakeOrchestrator(pb_grpc.OrchestratorServiceServicer):
    def __init__(self) -> None:
        # WatchJob scripts by the after_seq they answer, played in order.
        self.watch_scripts: dict[int, list[Script]] = {}
        self.feed_scripts: list[Script] = []
        self.watch_requests: list[pb.WatchJobRequest] = []
        self.submitted: list[str] = []
        self.submitted_inputs: list[dict[str, object]] = []
        self.cancelled: list[str] = []
        self.definitions = [pb.JobDefinitionInfo(name="codebase_assess", on_step_failure="continue")]
        self.target = ""
        self.jobs: list[pb.Job] = []  # what ListJobs pages through, newest first
        self.list_requests: list[pb.ListJobsRequest] = []

    async def _play(self, script: Script, context):  # type: ignore[no-untyped-def]
        for item in script:
            if isinstance(item, Abort):
                await context.abort(item.code, item.message)
            elif isinstance(item, Hold):
                await item.release.wait()
            else:
                yield item
        # The script is over: hold the stream open like an idle server would.
        await asyncio.Event().wait()

    async def WatchJob(self, request, context):  # noqa: N802
        self.watch_requests.append(request)
        queued = self.watch_scripts.get(request.after_seq) or [[Hold()]]
        script = queued.pop(0)
        async for item in self._play(script, context):
            yield item
            if item.WhichOneof("kind") == "event" and item.event.job_changed.status in (
                    pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_COMPLETED_WITH_FAILURES,
                    pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED):
                return  # the contract: the terminal event ends the stream with OK

    async def WatchJobs(self, request, context):  # noqa: N802
        script = self.feed_scripts.pop(0) if self.feed_scripts else [Hold()]
        async for item in self._play(script, context):
            yield item

    async def ListJobs(self, request, context):  # noqa: N802
        """Filters as the real server does; the token is an offset (opaque to the page)."""
        self.list_requests.append(request)
        found = [j for j in self.jobs if (not request.status or j.status == request.status)
                 and j.definition_name.startswith(request.name_prefix)]
        start, size = int(request.page_token or 0), request.page_size or 50
        more = start + size < len(found)
        return pb.ListJobsResponse(jobs=found[start:start + size],
                                   next_page_token=str(start + size) if more else "")

    async def ListJobDefinitions(self, request, context):  # noqa: N802
        return pb.ListJobDefinitionsResponse(definitions=self.definitions)

    async def SubmitJob(self, request, context):  # noqa: N802
        self.submitted.append(request.definition_name)
        self.submitted_inputs.append(json_format.MessageToDict(request)["inputs"]
                                     if request.inputs else {})
        return pb.SubmitJobResponse(job=pb.Job(job_id="f" * 32, status=pb.JOB_STATUS_PENDING))

    async def CancelJob(self, request, context):  # noqa: N802
        self.cancelled.append(request.job_id)
        return pb.CancelJobResponse(job=pb.Job(job_id=request.job_id, status=pb.JOB_STATUS_CANCELLED))


NOW = Timestamp(seconds=1_764_000_000)


def step(name: str, index: int, status: int, **kw) -> pb.Step:  # type: ignore[no-untyped-def]
    return pb.Step(step_id=f"id-{name}", index=index, name=name, type="shell", status=status,
                   attempt=1, max_attempts=1, created_at=NOW, **kw)


def job(status: int, *steps: pb.Step, **kw) -> pb.Job:  # type: ignore[no-untyped-def]
    return pb.Job(job_id="a" * 32, definition_name="codebase_assess", status=status,
                  on_step_failure="continue", steps=steps, created_at=NOW, **kw)


def snapshot(j: pb.Job, seq: int) -> pb.WatchJobResponse:
    j.head_seq = seq
    return pb.WatchJobResponse(snapshot=pb.JobSnapshot(job=j, seq=seq))


def step_event(seq: int, s: pb.Step) -> pb.WatchJobResponse:
    return pb.WatchJobResponse(event=pb.JobEvent(seq=seq, job_id="a" * 32, emitted_at=NOW,
                                                 step_changed=s))


def job_event(seq: int, header: pb.Job) -> pb.WatchJobResponse:
    header = pb.Job(**{f.name: v for f, v in header.ListFields() if f.name != "steps"})
    header.head_seq = seq
    return pb.WatchJobResponse(event=pb.JobEvent(seq=seq, job_id="a" * 32, emitted_at=NOW,
                                                 job_changed=header))
