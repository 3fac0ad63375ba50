"""/metrics scraped from a real server, during and after a job: the counters moved by what
the orchestrator decided, no more, no less."""

from __future__ import annotations

import re
import threading
import urllib.request
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import Orchestrator
from tests.support import until

DEADLINE = 60


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(url, timeout=DEADLINE).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_what_the_orchestrator_decided(tmp_path: Path) -> None:
    orch = Orchestrator(f"sqlite:///{tmp_path / 'm.db'}", workspace=tmp_path,
                        extra=["--metrics-port", "0"])
    try:
        port = int(orch.wait_for(re.compile(r"metrics on http://[\d.]+:(\d+)/metrics")).group(1))
        url = f"http://127.0.0.1:{port}/metrics"
        before = scrape(url)
        gate = tmp_path / "go"
        with grpc.insecure_channel(orch.target) as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                'name = "m"\n[policy]\non_step_failure = "continue"\n'
                '[steps.ok]\ntype = "shell"\ncommands = ["true", "true", "true"]\n'
                '[steps.bad]\ntype = "shell"\nmax_child_failures = 0\n'
                f'commands = ["while [ ! -f {gate} ]; do sleep 0.05; done; exit 3"]\n')),
                timeout=DEADLINE).job
            stream = stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE)
            reader = threading.Thread(target=lambda: list(stream), daemon=True)
            reader.start()
            # During: a step running, a watcher open, the job running.
            until(lambda: value(scrape(url), "stepwatch_steps_running") >= 1, "a running step")
            during = scrape(url)
            assert value(during, "stepwatch_jobs_running") == 1
            assert value(during, "stepwatch_watchers_open", rpc="WatchJob") >= 1
            gate.write_text("")
            reader.join(DEADLINE)
            final = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job
        assert final.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES
        until(lambda: value(scrape(url), "stepwatch_watchers_open", rpc="WatchJob") == 0,
              "the watcher closed")
        after = scrape(url)

        def grew(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert grew("stepwatch_jobs_finished_total", status="COMPLETED_WITH_FAILURES") == 1
        assert grew("stepwatch_jobs_finished_total", status="COMPLETED") == 0
        assert grew("stepwatch_steps_finished_total", status="COMPLETED", type="shell") == 1
        assert grew("stepwatch_steps_finished_total", status="FAILED", type="shell") == 1
        assert grew("stepwatch_children_finished_total", status="completed") == 3
        assert grew("stepwatch_children_finished_total", status="failed") == 1
        assert grew("stepwatch_step_duration_seconds_count", type="shell") == 2
        assert grew("stepwatch_events_appended_total") == final.head_seq
        assert value(after, "stepwatch_jobs_running") == 0
        assert value(after, "stepwatch_steps_running") == 0
        assert grew("stepwatch_store_write_seconds_count", op="create_job") == 1
    finally:
        orch.stop()
