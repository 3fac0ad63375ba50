"""The UI as a web app, from outside: login and roles in real Chromium; a foreign Host and
a foreign Origin refused; security headers and session cookie flags on every response."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import websockets.sync.client
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.common.by import By
from websockets.exceptions import InvalidStatus

from stepwatch.passwords import hash_password
from stepwatch.tokens import new_token
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.chromium import UI, wait
from tests.procs import Orchestrator, Proc

pytestmark = pytest.mark.browser
DEADLINE = 60



@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Orchestrator, UI]]:
    (tmp_path / "users").write_text(
        f"alice {hash_password('alice-pw')} operator\nbob {hash_password('bob-pw')} viewer\n")
    started: list[Proc] = []
    try:
        orch = Orchestrator(f"sqlite:///{tmp_path / 's.db'}", workspace=tmp_path)
        started.append(orch)
        ui = UI(orch.target, "--ui-auth-file", str(tmp_path / "users"))
        started.append(ui)
        yield orch, ui
    finally:
        for proc in reversed(started):
            proc.stop()


def log_in(driver: webdriver.Chrome, url: str, user: str, password: str) -> None:
    driver.delete_all_cookies()
    driver.get(url)
    wait(driver, lambda d: "/login" in d.current_url, DEADLINE)  # sent to log in first
    driver.find_element(By.CSS_SELECTOR, ".sw-login-user input").send_keys(user)
    driver.find_element(By.CSS_SELECTOR, ".sw-login-password input").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, ".sw-login").click()
    wait(driver, lambda d: "/login" not in d.current_url, DEADLINE)


def shown(driver: webdriver.Chrome, css: str) -> bool:
    return any(e.is_displayed() for e in driver.find_elements(By.CSS_SELECTOR, css))


def test_a_viewer_sees_no_run_cancel_or_rerun_and_an_operator_does(
        browser: webdriver.Chrome, stack: tuple[Orchestrator, UI]) -> None:
    orch, ui = stack
    with grpc.insecure_channel(orch.target) as ch:
        job = pb_grpc.OrchestratorServiceStub(ch).SubmitJob(pb.SubmitJobRequest(definition_toml=(
            'name = "slow"\n[steps.s]\ntype = "shell"\ncommands = ["sleep 60"]\n')),
            timeout=DEADLINE).job
    # A wrong password is refused.
    browser.get(f"{ui.url}/login")
    browser.find_element(By.CSS_SELECTOR, ".sw-login-user input").send_keys("bob")
    browser.find_element(By.CSS_SELECTOR, ".sw-login-password input").send_keys("nope")
    browser.find_element(By.CSS_SELECTOR, ".sw-login").click()
    # The form posts and the answer is a new document: read it in one go, never through an
    # element of the page being replaced (stale).
    wait(browser, lambda d: "wrong user or password" in d.execute_script(
        "const e = document.querySelector('.sw-login-error'); return e ? e.textContent : ''"),
        DEADLINE)
    # bob, a viewer: sees the job, is offered no action.
    log_in(browser, f"{ui.url}/", "bob", "bob-pw")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"[data-job-id='{job.job_id}']"),
         DEADLINE)
    assert "bob (viewer)" in browser.find_element(By.CSS_SELECTOR, ".sw-user").text
    assert not shown(browser, ".sw-cancel") and not shown(browser, ".sw-run")
    browser.get(f"{ui.url}/jobs/{job.job_id}")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-step-id]"), DEADLINE)
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-connection]").get_attribute(
        "data-connection") == "LIVE", DEADLINE)  # the header is drawn: actions would be by now
    assert not shown(browser, ".sw-cancel") and not shown(browser, ".sw-rerun")
    # alice, an operator: Run on the queue, Cancel on the running job.
    log_in(browser, f"{ui.url}/jobs/{job.job_id}", "alice", "alice-pw")
    assert browser.current_url.endswith(f"/jobs/{job.job_id}")  # back where she was going
    wait(browser, lambda d: shown(d, ".sw-cancel"), DEADLINE)
    browser.get(f"{ui.url}/")
    wait(browser, lambda d: shown(d, ".sw-run") and shown(d, f"[data-job-id='{job.job_id}'] .sw-cancel"),
         DEADLINE)
    with grpc.insecure_channel(orch.target) as ch:
        pb_grpc.OrchestratorServiceStub(ch).CancelJob(pb.CancelJobRequest(job_id=job.job_id),
                                                      timeout=DEADLINE)


def request(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    conn.request("GET", path, headers=headers)
    return conn.getresponse()


def test_foreign_host_and_origin_are_refused_and_headers_are_set(
        stack: tuple[Orchestrator, UI]) -> None:
    _, ui = stack
    evil = request(ui.port, "/login", {"Host": "evil.example"})
    assert evil.status == 400  # DNS rebinding: another name for this address
    ok = request(ui.port, "/login", {"Host": f"127.0.0.1:{ui.port}"})
    assert ok.status == 200
    headers = {k.lower(): v for k, v in ok.getheaders()}
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-content-type-options"] == "nosniff"
    cookie = headers.get("set-cookie", "").lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    # The UI's own metrics, for Prometheus (no login).
    scraped = request(ui.port, "/metrics", {"Host": f"127.0.0.1:{ui.port}"})
    assert scraped.status == 200
    text = scraped.read().decode()
    assert "stepwatch_ui_pages_open" in text and "stepwatch_ui_stream_reconnects" in text
    # A page (not the login page) without a session goes to the login.
    assert request(ui.port, "/", {"Host": f"127.0.0.1:{ui.port}"}).status in (302, 307)
    # socket.io from another origin: refused, over polling and over a websocket.
    path = "/_nicegui_ws/socket.io/?EIO=4&transport=polling"
    foreign = request(ui.port, path, {"Host": f"127.0.0.1:{ui.port}",
                                      "Origin": "http://evil.example"})
    assert foreign.status == 403
    own = request(ui.port, path, {"Host": f"127.0.0.1:{ui.port}",
                                  "Origin": f"http://127.0.0.1:{ui.port}"})
    assert own.status == 200
    ws = f"ws://127.0.0.1:{ui.port}/_nicegui_ws/socket.io/?EIO=4&transport=websocket"
    with pytest.raises(InvalidStatus) as refused:
        websockets.sync.client.connect(ws, origin="http://evil.example", open_timeout=DEADLINE)
    assert refused.value.response.status_code == 403
    started = time.monotonic()
    with websockets.sync.client.connect(ws, origin=f"http://127.0.0.1:{ui.port}",
                                        open_timeout=DEADLINE) as conn:
        assert conn.recv(timeout=DEADLINE).startswith("0")  # engine.io's open packet
    assert time.monotonic() - started < DEADLINE


def test_the_ui_talks_to_an_orchestrator_with_auth_on_with_its_own_token(
        browser: webdriver.Chrome, tmp_path: Path) -> None:
    viewer, line = new_token("viewer", "the-ui")
    admin, admin_line = new_token("admin", "test")
    (tmp_path / "tokens").write_text(f"{line}\n{admin_line}\n")
    started: list[Proc] = []
    try:
        orch = Orchestrator(f"sqlite:///{tmp_path / 't.db'}", workspace=tmp_path,
                            extra=["--auth-token-file", str(tmp_path / "tokens")])
        started.append(orch)
        with grpc.insecure_channel(orch.target) as ch:
            job = pb_grpc.OrchestratorServiceStub(ch).SubmitJob(pb.SubmitJobRequest(
                definition_toml='name = "t"\n[steps.s]\ntype = "shell"\ncommands = ["true"]\n'),
                timeout=DEADLINE, metadata=[("authorization", f"Bearer {admin}")]).job
        ui = UI(orch.target, "--token", viewer)
        started.append(ui)
        browser.get(f"{ui.url}/jobs/{job.job_id}")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-step-id]"), DEADLINE)
        browser.get(f"{ui.url}/")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"[data-job-id='{job.job_id}']"),
             DEADLINE)
    finally:
        for proc in reversed(started):
            proc.stop()


def pages_open(ui: UI, page: str) -> float:
    text = request(ui.port, "/metrics", {"Host": f"127.0.0.1:{ui.port}"}).read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "stepwatch_ui_pages_open" and sample.labels.get("page") == page:
                return sample.value
    return 0.0


def test_the_pages_open_gauge_follows_tabs_opened_and_closed(
        browser: webdriver.Chrome, stack: tuple[Orchestrator, UI]) -> None:
    _, ui = stack
    log_in(browser, f"{ui.url}/", "alice", "alice-pw")
    wait(browser, lambda _: pages_open(ui, "queue") == 1, DEADLINE)
    browser.get("about:blank")  # the tab leaves the queue: its page ends (after the grace)
    wait(browser, lambda _: pages_open(ui, "queue") == 0, DEADLINE)
    assert "Traceback" not in ui.output and "TypeError" not in ui.output
