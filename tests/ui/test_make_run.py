"""`make run` as a person uses it: start, a job that completes with failures, one whose
command is killed, a cancel with its page open, the tab closed, Ctrl-C. The console holds
no WARNING, ERROR or traceback, the banner comes after both services answer, the
pages-open gauge goes back to 0, and make exits 0."""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

import grpc
import pytest
from selenium import webdriver
from selenium.webdriver.support.ui import WebDriverWait

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.procs import free_port
from tests.support import finish, submit, until
from tests.support.terminal import Console

pytestmark = pytest.mark.browser
DEADLINE = 120
BAD = re.compile(r"WARNING|ERROR|Traceback|Error \d+|exception", re.IGNORECASE)


def _gauge(ui_port: int, page: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/metrics", timeout=10).read().decode()
    found = re.search(rf'stepwatch_ui_pages_open\{{page="{page}"\}} ([0-9.]+)', text)
    return float(found.group(1)) if found else None


def test_make_run_console_stays_clean_and_ctrl_c_exits_0(browser: webdriver.Chrome,
                                                         tmp_path: Path) -> None:
    orch_port, ui_port, metrics_port = free_port(), free_port(), free_port()
    # On a terminal of its own (a pty): Ctrl-C is the terminal's ^C, as a person types it.
    console = Console()
    make = console.start(["make", "--no-print-directory", "run", f"ORCH_PORT={orch_port}",
                          f"UI_PORT={ui_port}", f"METRICS_PORT={metrics_port}",
                          f"DB_URL=sqlite:///{tmp_path / 'run.db'}"],
                         # a closed tab's page goes after 4 s, not 15
                         env={**os.environ, "STEPWATCH_UI_RECONNECT_S": "4"})
    log = console
    try:
        until(lambda: "Ctrl-C stops both." in log.read_text() or make.poll() is not None,
              "make run's banner", DEADLINE)
        assert make.poll() is None, log.read_text()
        banner_at = log.read_text().index("Stepwatch UI:")
        assert "stepwatch ui listening" in log.read_text()[:banner_at]  # both up first
        assert "listening on" in log.read_text()[:banner_at]

        with grpc.insecure_channel(f"127.0.0.1:{orch_port}") as ch:
            stub = pb_grpc.OrchestratorServiceStub(ch)
            failing = submit(stub, 'name = "ci"\n[policy]\non_step_failure = "continue"\n'
                             '[steps.t]\ntype = "shell"\ncommands = ["echo bad >&2; exit 3"]\n'
                             '[steps.k]\ntype = "shell"\ncommands = ["kill -9 $$"]\n')
            assert finish(stub, failing.job_id, DEADLINE).status == \
                pb.JOB_STATUS_COMPLETED_WITH_FAILURES
            slow = submit(stub, 'name = "slow"\n[steps.w]\ntype = "shell"\ncommands = ["sleep 60"]\n')
            browser.get(f"http://127.0.0.1:{ui_port}/jobs/{slow.job_id}")
            WebDriverWait(browser, DEADLINE).until(lambda d: d.find_elements(
                "css selector", "[data-step-id][data-status=STEP_STATUS_RUNNING]"))
            stub.CancelJob(pb.CancelJobRequest(job_id=slow.job_id), timeout=DEADLINE)
            WebDriverWait(browser, DEADLINE).until(lambda d: d.find_elements(
                "css selector", ".sw-badge[data-status=JOB_STATUS_CANCELLED]"))
            assert _gauge(ui_port, "job") == 1
            browser.get("about:blank")  # the tab leaves the page: NiceGUI deletes its client
            until(lambda: _gauge(ui_port, "job") == 0, "the pages-open gauge back to 0", DEADLINE)

        console.type(b"\x03")  # Ctrl-C
        assert console.wait(DEADLINE) == 0, log.read_text()
    finally:
        console.kill()
    text = log.read_text()
    bad = [line for line in text.splitlines() if BAD.search(line)]
    assert not bad, text
    assert "shutting down" in text
