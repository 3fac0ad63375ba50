"""The run page leads to the failure, as GitHub Actions' run view does: real Chromium, real
orchestrator and UI processes. A failed job opens on its failing step's log with no click;
the step list is dense; the selected step is in the URL; the queue says when the
orchestrator is away."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.chromium import UI
from tests.procs import Orchestrator, Proc, free_port, run_job

pytestmark = pytest.mark.browser
DEADLINE = 60

FAILING = ('name = "ci"\n'
           '[steps.checkout]\ntype = "shell"\ncommands = ["echo checked out"]\n'
           '[steps.unit_tests]\ntype = "shell"\ndepends = ["checkout"]\nmax_child_failures = 1\n'
           'commands = ["echo test_a ok", "echo compiling; echo \'error: missing semicolon at '
           'line 42\' >&2; exit 2", "echo \'AssertionError: 1 != 2\' >&2; exit 1"]\n'
           '[steps.package]\ntype = "shell"\ndepends = ["unit_tests"]\ncommands = ["true"]\n')


def log_text(d: webdriver.Chrome) -> str:
    return str(d.execute_script(
        "const e = document.querySelector('.nicegui-log'); return e ? e.textContent : ''"))


def visible_rows(d: webdriver.Chrome) -> int:
    """Step rows wholly inside the window, as a person sees them without scrolling."""
    return int(d.execute_script("""return [...document.querySelectorAll('[data-step-id]')]
        .filter(r => { const b = r.getBoundingClientRect();
                       return b.height > 0 && b.top >= 0 && b.bottom <= window.innerHeight; })
        .length;"""))


def test_a_failed_job_opens_on_its_failing_log_and_the_url_holds_the_step(
        browser: webdriver.Chrome, tmp_path: Path, procs: list[Proc]) -> None:
    orch = Orchestrator(f"sqlite:///{tmp_path / 'r.db'}", workspace=tmp_path)
    procs.append(orch)
    ui = UI(orch.target)
    procs.append(ui)
    job = run_job(orch.target, DEADLINE, definition_toml=FAILING)
    assert job.status == pb.JOB_STATUS_FAILED
    browser.set_window_size(1280, 900)
    browser.get(f"{ui.url}/jobs/{job.job_id}")
    # No click: the first failed step is selected and its failed child's lines are shown.
    WebDriverWait(browser, DEADLINE).until(
        lambda d: "error: missing semicolon at line 42" in log_text(d))
    assert "step=unit_tests" in browser.current_url
    selected = browser.find_element(By.CSS_SELECTOR, ".sw-step.sw-selected")
    assert selected.get_attribute("data-status") == "STEP_STATUS_FAILED"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Stream closed" not in browser.page_source and "Finished" in body
    # Another step: the URL follows, and a reload opens the same step.
    browser.find_element(By.CSS_SELECTOR, "[data-step-id] .sw-step-name").click()  # checkout
    WebDriverWait(browser, DEADLINE).until(lambda d: "step=checkout" in d.current_url)
    WebDriverWait(browser, DEADLINE).until(lambda d: "checked out" in log_text(d))
    browser.refresh()
    WebDriverWait(browser, DEADLINE).until(lambda d: "checked out" in log_text(d))
    assert "step=checkout" in browser.current_url
    assert browser.find_element(By.CSS_SELECTOR, ".sw-step.sw-selected .sw-step-name").text == \
        "checkout"
    # A step that never ran (package was skipped) has nothing to open.
    skipped = next(s for s in job.steps if s.name == "package")
    assert skipped.status == pb.STEP_STATUS_SKIPPED and skipped.attempt == 0
    browser.find_element(By.ID, f"step-{skipped.index}").click()
    WebDriverWait(browser, DEADLINE).until(lambda d: "step=checkout" in d.current_url)
    assert "sw-idle" in browser.find_element(By.ID, f"step-{skipped.index}").get_attribute("class")


def test_25_or_more_step_rows_fit_a_1280_by_900_window(
        browser: webdriver.Chrome, tmp_path: Path, procs: list[Proc]) -> None:
    orch = Orchestrator(f"sqlite:///{tmp_path / 'm.db'}", workspace=tmp_path)
    procs.append(orch)
    ui = UI(orch.target)
    procs.append(ui)
    toml = 'name = "many"\n' + "".join(
        f'[steps.s{i:02d}]\ntype = "shell"\ncommands = ["true"]\n' for i in range(60))
    job = run_job(orch.target, DEADLINE, definition_toml=toml)
    browser.set_window_size(1280, 900)
    browser.get(f"{ui.url}/jobs/{job.job_id}")
    WebDriverWait(browser, DEADLINE).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-step-id]")) == 60)
    shown = visible_rows(browser)
    assert shown >= 25, f"{shown} step rows in view"
    durations = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".sw-duration")]
    assert all(t.endswith("s") and " s" not in t for t in durations if t), durations


def test_the_queue_says_where_the_orchestrator_is_and_disables_run_while_it_is_away(
        browser: webdriver.Chrome, tmp_path: Path, procs: list[Proc]) -> None:
    port = free_port()
    ui = UI(f"127.0.0.1:{port}")
    procs.append(ui)
    browser.get(ui.url)
    label = ".sw-connection"
    WebDriverWait(browser, DEADLINE).until(
        lambda d: f"unreachable at 127.0.0.1:{port}" in d.find_element(By.CSS_SELECTOR, label).text)
    run = browser.find_element(By.CSS_SELECTOR, ".sw-run")
    assert run.get_attribute("disabled") is not None
    orch = Orchestrator(f"sqlite:///{tmp_path / 'q.db'}", port=port)
    procs.append(orch)
    WebDriverWait(browser, DEADLINE).until(
        lambda d: d.find_element(By.CSS_SELECTOR, label).text == "Live")
    WebDriverWait(browser, DEADLINE).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".sw-run").get_attribute("disabled") is None)
    with grpc.insecure_channel(orch.target) as ch:
        job = pb_grpc.OrchestratorServiceStub(ch).SubmitJob(pb.SubmitJobRequest(
            definition_toml='name = "one"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n'),
            timeout=DEADLINE).job
    row = WebDriverWait(browser, DEADLINE).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f"[data-job-id='{job.job_id}']"))
    assert row.size["height"] <= 40  # one line per job
