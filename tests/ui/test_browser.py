"""Real headless Chromium against the real orchestrator and UI processes."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.chromium import UI, page_width
from tests.procs import REPO, Orchestrator, Proc, free_port, run_job

pytestmark = pytest.mark.browser
OUTPUT = REPO / "test-output" / "ui"
DEADLINE = 60
TERMINAL = ("JOB_STATUS_COMPLETED", "JOB_STATUS_COMPLETED_WITH_FAILURES", "JOB_STATUS_FAILED",
            "JOB_STATUS_CANCELLED")
FAILED_RED = "rgb(211, 47, 47)"  # #d32f2f, the status table's FAILED colour



def data_status(driver: webdriver.Chrome, css: str) -> str | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].get_attribute("data-status") if found else None


def get_job(target: str, job_id: str) -> pb.Job:
    with grpc.insecure_channel(target) as ch:
        return pb_grpc.OrchestratorServiceStub(ch).GetJob(pb.GetJobRequest(job_id=job_id),
                                                          timeout=DEADLINE).job


def submit(target: str, **source: str) -> pb.Job:
    with grpc.insecure_channel(target) as ch:
        return pb_grpc.OrchestratorServiceStub(ch).SubmitJob(pb.SubmitJobRequest(**source),
                                                             timeout=DEADLINE).job


def cancel(target: str, job_id: str) -> None:
    with grpc.insecure_channel(target) as ch:
        pb_grpc.OrchestratorServiceStub(ch).CancelJob(pb.CancelJobRequest(job_id=job_id),
                                                      timeout=DEADLINE)


def test_codebase_assess_in_chromium(browser: webdriver.Chrome, tmp_path: Path,
                                     procs: list[Proc]) -> None:
    orch = Orchestrator(f"sqlite:///{tmp_path / 'b.db'}")
    procs.append(orch)
    ui = UI(orch.target)
    procs.append(ui)
    job = submit(orch.target, definition_name="codebase_assess")
    browser.get(f"{ui.url}/jobs/{job.job_id}")
    WebDriverWait(browser, DEADLINE).until(
        lambda d: data_status(d, ".sw-badge[data-status^=JOB_STATUS]") in TERMINAL)
    final = get_job(orch.target, job.job_id)
    # Every step's DOM status is exactly the server's.
    WebDriverWait(browser, DEADLINE).until(lambda d: all(
        data_status(d, f"[data-step-id='{s.step_id}']") == pb.StepStatus.Name(s.status)
        for s in final.steps))
    failed = next(s for s in final.steps if s.name == "architecture_notes")
    assert failed.status == pb.STEP_STATUS_FAILED
    row = browser.find_element(By.CSS_SELECTOR, f"[data-step-id='{failed.step_id}']")
    badge = row.find_element(By.CSS_SELECTOR, ".sw-badge")
    computed = browser.execute_script(
        "return getComputedStyle(arguments[0]).backgroundColor", badge)
    assert computed == FAILED_RED
    assert badge.text.strip().endswith("Failed")
    assert "no documents found matching tags: ['architecture']" in row.text
    assert "(tolerated)" in row.text
    # The failed step opens by itself, with its whole failure and the tolerance spelled out.
    WebDriverWait(browser, DEADLINE).until(lambda d: "tolerated — the job went on" in d.find_element(
        By.TAG_NAME, "body").text)
    job_badge = browser.find_element(By.CSS_SELECTOR, ".sw-badge[data-status^=JOB_STATUS]")
    assert job_badge.get_attribute("data-status") == "JOB_STATUS_COMPLETED_WITH_FAILURES"
    assert "Completed with failures" in job_badge.text
    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(OUTPUT / "job_page.png"))
    assert (OUTPUT / "job_page.png").stat().st_size > 10_000


def test_page_catches_up_after_the_orchestrator_restarts(browser: webdriver.Chrome, tmp_path: Path,
                                                         procs: list[Proc]) -> None:
    db, port = f"sqlite:///{tmp_path / 'r.db'}", free_port()
    flag = tmp_path / "first-attempt"
    toml = (f'name = "restart"\n[steps.wait]\ntype = "shell"\nmax_attempts = 2\n'
            f'commands = ["test -f {flag} || {{ touch {flag}; sleep 60; }}"]\n'
            '[steps.after]\ntype = "shell"\ncommands = ["true"]\ndepends = ["wait"]\n')
    orch = Orchestrator(db, port=port)
    procs.append(orch)
    ui = UI(orch.target)
    procs.append(ui)
    job = submit(orch.target, definition_toml=toml)
    browser.get(f"{ui.url}/jobs/{job.job_id}")
    WebDriverWait(browser, DEADLINE).until(
        lambda d: "1 running" in d.find_element(By.CSS_SELECTOR, "[data-step-id]").text)
    assert orch.stop(signal.SIGTERM) == 0  # a graceful stop: the watch stream ends UNAVAILABLE
    connection = "[data-connection]"
    WebDriverWait(browser, DEADLINE).until(lambda d: d.find_element(
        By.CSS_SELECTOR, connection).get_attribute("data-connection") == "RECONNECTING")
    assert "Reconnecting" in browser.find_element(By.CSS_SELECTOR, connection).text
    badge = browser.find_element(By.CSS_SELECTOR, ".sw-badge[data-status^=JOB_STATUS]")
    assert "sw-stale" in badge.get_attribute("class")  # greyed: it may be out of date
    WebDriverWait(browser, DEADLINE).until(lambda d: "last heard" in d.page_source)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(OUTPUT / "reconnecting.png"))

    orch = Orchestrator(db, port=port)  # same database, same address
    procs.append(orch)
    WebDriverWait(browser, DEADLINE).until(
        lambda d: data_status(d, ".sw-badge[data-status^=JOB_STATUS]") == "JOB_STATUS_COMPLETED")
    final = get_job(orch.target, job.job_id)
    for s in final.steps:
        assert data_status(browser, f"[data-step-id='{s.step_id}']") == pb.StepStatus.Name(s.status)
    assert [s.status for s in final.steps] == [pb.STEP_STATUS_COMPLETED] * 2
    assert "sw-stale" not in browser.find_element(
        By.CSS_SELECTOR, ".sw-badge[data-status^=JOB_STATUS]").get_attribute("class")


def test_the_queue_page_waits_for_an_orchestrator_that_is_not_up_yet(
        browser: webdriver.Chrome, tmp_path: Path, procs: list[Proc]) -> None:
    port = free_port()
    ui = UI(f"127.0.0.1:{port}")  # nothing listens there yet (as `make run` can start them)
    procs.append(ui)
    browser.get(ui.url)
    label = ".sw-connection"
    WebDriverWait(browser, DEADLINE).until(
        lambda d: f"unreachable at 127.0.0.1:{port}" in d.find_element(By.CSS_SELECTOR, label).text)
    assert browser.find_elements(By.CSS_SELECTOR, "[data-definitions]") == []
    orch = Orchestrator(f"sqlite:///{tmp_path / 'late.db'}", port=port)
    procs.append(orch)
    WebDriverWait(browser, DEADLINE).until(
        lambda d: d.find_element(By.CSS_SELECTOR, label).text == "Live")
    with grpc.insecure_channel(orch.target) as ch:
        defs = pb_grpc.OrchestratorServiceStub(ch).ListJobDefinitions(
            pb.ListJobDefinitionsRequest(), timeout=DEADLINE).definitions
    WebDriverWait(browser, DEADLINE).until(lambda d: [
        e.get_attribute("data-definitions") for e in d.find_elements(
            By.CSS_SELECTOR, "[data-definitions]")] == [str(len(defs))])
    job = submit(orch.target, definition_name=defs[0].name)  # and the feed is live
    WebDriverWait(browser, DEADLINE).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"[data-job-id='{job.job_id}']"))


def test_the_step_panel_shows_failed_children_first_and_a_live_log(
        browser: webdriver.Chrome, tmp_path: Path, procs: list[Proc]) -> None:
    orch = Orchestrator(f"sqlite:///{tmp_path / 'p.db'}", workspace=tmp_path)
    procs.append(orch)
    ui = UI(orch.target)
    procs.append(ui)
    # Child 0 prints for two minutes: its log is live whatever the load on the machine (the
    # other 1,999 start sandboxes, a few ms of kernel time each).
    commands = ["for i in $(seq 1 1200); do echo tick $i; sleep 0.1; done"] + ["true"] * 1999
    for i in (17, 90, 199):  # early: they fail soon, whatever the load
        commands[i] = f"echo boom-{i} >&2; exit 3"
    quoted = ", ".join(f'"{c}"' for c in commands)
    job = submit(orch.target, definition_toml=(
        f'name = "many"\n[steps.s]\ntype = "shell"\ncommands = [{quoted}]\n'
        'concurrency = 32\nmax_child_failures = 3\n'
        '[steps.loud]\ntype = "shell"\ncommands = ["seq 1 200000"]\n'))
    WebDriverWait(browser, DEADLINE).until(
        lambda _: get_job(orch.target, job.job_id).steps[0].children.failed == 3)
    browser.get(f"{ui.url}/jobs/{job.job_id}?step=s")
    def first_rows(d: webdriver.Chrome) -> list[list[str]]:
        """(index, data-status, text) of the table's first rows, read in one go (rows re-render)."""
        return d.execute_script("""return [...document.querySelectorAll('.q-table tbody tr')]
            .filter(r => r.querySelector('[data-status]')).slice(0, 3)
            .map(r => [r.innerText.trim().split(/\\s+/)[0],
                       r.querySelector('[data-status]').dataset.status, r.innerText]);""")

    WebDriverWait(browser, DEADLINE).until(lambda d: len(first_rows(d)) == 3)
    rows = first_rows(browser)
    assert [r[0] for r in rows] == ["17", "90", "199"], rows
    assert [r[1] for r in rows] == ["CHILD_STATUS_FAILED"] * 3
    assert all("boom" in r[2] and "exit code 3" in r[2] for r in rows)
    # Open child 0's log (it is still printing): lines appear while it runs.
    browser.get(f"{ui.url}/jobs/{job.job_id}?step=s&child=0")

    def log_text(d: webdriver.Chrome) -> str:
        # textContent, not .text: lines scrolled out of the log's view are still in it.
        return d.execute_script(
            "const e = document.querySelector('.nicegui-log'); return e ? e.textContent : ''")

    def ticks(d: webdriver.Chrome) -> int:
        return log_text(d).count("tick ")

    WebDriverWait(browser, DEADLINE).until(lambda d: ticks(d) >= 3)
    seen = ticks(browser)
    WebDriverWait(browser, DEADLINE).until(lambda d: ticks(d) >= seen + 10)
    assert get_job(orch.target, job.job_id).status == pb.JOB_STATUS_RUNNING  # it was live
    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(OUTPUT / "step_panel.png"))
    # A log over 1 MiB (200,000 lines; the child's cap keeps 1 MiB of it) loads whole into
    # the panel's window of its last 20,000 lines, and the tab stays responsive.
    browser.get(f"{ui.url}/jobs/{job.job_id}?step=loud")
    try:
        WebDriverWait(browser, DEADLINE).until(lambda d: "bytes of output dropped" in log_text(d))
    except Exception:
        browser.save_screenshot(str(OUTPUT / "step_panel_loud_failed.png"))
        text = log_text(browser)
        raise AssertionError(f"log view: {len(text)} characters, ends {text[-300:]!r}") from None
    started = time.monotonic()
    assert browser.execute_script("return document.querySelectorAll('.nicegui-log *').length") < 2000
    assert log_text(browser).count("[0] ") >= 15_000  # the window holds the log's tail, not 40 lines
    assert time.monotonic() - started < 5  # the main thread answers: it is not frozen
    cancel(orch.target, job.job_id)  # child 0 need not print on


def test_cancel_and_rerun_from_the_job_page(browser: webdriver.Chrome, tmp_path: Path,
                                            procs: list[Proc]) -> None:
    orch = Orchestrator(f"sqlite:///{tmp_path / 'a.db'}", workspace=tmp_path)
    procs.append(orch)
    ui = UI(orch.target)
    procs.append(ui)
    job = submit(orch.target, definition_toml=(
        'name = "act"\n[policy]\non_step_failure = "continue"\n'
        '[steps.quick]\ntype = "shell"\ncommands = ["true"]\n'
        '[steps.slow]\ntype = "shell"\ncommands = ["sleep 60"]\n'))
    browser.get(f"{ui.url}/jobs/{job.job_id}")
    WebDriverWait(browser, DEADLINE).until(lambda _: [
        s.status for s in get_job(orch.target, job.job_id).steps] == [
        pb.STEP_STATUS_COMPLETED, pb.STEP_STATUS_RUNNING])

    def click(text: str) -> None:
        WebDriverWait(browser, DEADLINE).until(lambda d: any(
            b.is_displayed() and b.text.strip().lower() == text.lower()
            for b in d.find_elements(By.TAG_NAME, "button")))
        next(b for b in browser.find_elements(By.TAG_NAME, "button")
             if b.is_displayed() and b.text.strip().lower() == text.lower()).click()

    click("block\nCancel")  # the icon's name is part of the button's text
    click("Cancel the job")  # the confirmation
    WebDriverWait(browser, DEADLINE).until(
        lambda d: data_status(d, ".sw-badge[data-status^=JOB_STATUS]") == "JOB_STATUS_CANCELLED")
    assert get_job(orch.target, job.job_id).status == pb.JOB_STATUS_CANCELLED
    click("replay\nRerun")
    click("Failed only (carry the completed steps over)")
    WebDriverWait(browser, DEADLINE).until(
        lambda d: d.current_url.rstrip("/") != f"{ui.url}/jobs/{job.job_id}")
    new_id = browser.current_url.rsplit("/", 1)[-1]
    rerun = get_job(orch.target, new_id)
    assert rerun.rerun_of == job.job_id
    quick = next(s for s in rerun.steps if s.name == "quick")
    assert quick.status == pb.STEP_STATUS_COMPLETED and quick.carried_from == job.job_id
    WebDriverWait(browser, DEADLINE).until(
        lambda d: data_status(d, f"[data-step-id='{quick.step_id}']") == "STEP_STATUS_COMPLETED")
    cancel(orch.target, new_id)  # the rerun's slow step: stop it


def test_a_finished_job_page_a_missing_job_and_a_ticking_duration(
        browser: webdriver.Chrome, tmp_path: Path, procs: list[Proc]) -> None:
    orch = Orchestrator(f"sqlite:///{tmp_path / 'f.db'}")
    procs.append(orch)
    ui = UI(orch.target)
    procs.append(ui)
    final = job = run_job(orch.target, DEADLINE, definition_name="codebase_assess")
    browser.get(f"{ui.url}/jobs/{job.job_id}")
    # The events panel of a finished job holds its last events, newest first.
    # (behind the "Raw events" toggle: in the page, not shown until opened)
    WebDriverWait(browser, DEADLINE).until(lambda d: f"#{final.head_seq} " in d.execute_script(
        "return document.querySelector('.nicegui-content').textContent"))
    # The failed step is linked from the top; the link leads to its row.
    link = browser.find_element(By.LINK_TEXT, "architecture_notes")
    failed = next(s for s in final.steps if s.name == "architecture_notes")
    assert link.get_attribute("href").endswith(f"#step-{failed.index}")
    assert browser.find_element(By.ID, f"step-{failed.index}").get_attribute(
        "data-status") == "STEP_STATUS_FAILED"
    # An unknown job: said plainly, with no status badge.
    browser.get(f"{ui.url}/jobs/{'0' * 32}")
    WebDriverWait(browser, DEADLINE).until(lambda d: "No such job" in d.page_source)
    assert not [b for b in browser.find_elements(By.CSS_SELECTOR, ".sw-badge") if b.is_displayed()]
    # A running step's duration grows while it runs.
    slow = submit(orch.target, definition_toml='name = "tick"\n[steps.s]\ntype = "shell"\n'
                                               'commands = ["sleep 30"]\n')
    browser.get(f"{ui.url}/jobs/{slow.job_id}")

    def seconds(d: webdriver.Chrome) -> float:
        """The row's human duration ("4.2s", "12s", "1m 05s") in seconds."""
        text = d.find_element(By.CSS_SELECTOR, "[data-step-id] .sw-duration").text
        total = 0.0
        for part in text.split():
            if part.endswith("m"):
                total += 60 * float(part[:-1])
            elif part.endswith("s"):
                total += float(part[:-1])
        return total if text else -1.0

    WebDriverWait(browser, DEADLINE).until(lambda d: seconds(d) >= 1.0)
    first = seconds(browser)
    WebDriverWait(browser, DEADLINE).until(lambda d: seconds(d) >= first + 2.0)
    cancel(orch.target, slow.job_id)


def _contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two CSS rgb() colours."""
    def lum(css: str) -> float:
        r, g, b = (int(x) / 255 for x in css[css.index("(") + 1:css.index(")")].split(",")[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((lum(fg), lum(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_layout_fits_from_390_to_1280_px_in_light_and_dark(
        browser: webdriver.Chrome, tmp_path: Path, procs: list[Proc]) -> None:
    orch = Orchestrator(f"sqlite:///{tmp_path / 'l.db'}")
    procs.append(orch)
    ui = UI(orch.target)
    procs.append(ui)
    job = run_job(orch.target, DEADLINE, definition_name="codebase_assess")
    docs = REPO / "docs"
    for scheme in ("light", "dark"):
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": scheme}]})
        for width in (390, 1280):
            browser.set_window_size(width, 900)
            for name, path in (("queue", "/"), ("job", f"/jobs/{job.job_id}")):
                browser.get(ui.url + path)
                WebDriverWait(browser, DEADLINE).until(lambda d: data_status(
                    d, ".sw-badge[data-status^=JOB_STATUS]") == "JOB_STATUS_COMPLETED_WITH_FAILURES")
                scroll, inner = page_width(browser)
                assert scroll <= inner, f"{name} page at {width} px ({scheme}): {scroll} > {inner}"
                dark = browser.execute_script("return document.body.classList.contains('body--dark')")
                assert dark == (scheme == "dark")
                for badge in browser.find_elements(By.CSS_SELECTOR, ".sw-badge"):
                    fg, bg = browser.execute_script(
                        "const s = getComputedStyle(arguments[0]); return [s.color, s.backgroundColor]",
                        badge)
                    assert _contrast(fg, bg) >= 4.5, (badge.text, fg, bg)
                browser.save_screenshot(str(docs / f"{name}_{width}_{scheme}.png"))
