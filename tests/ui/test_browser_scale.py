"""Real Chromium on big things: 300 jobs in the queue, a 300-step job, a 2,000-child job.

Figures (render time, Chromium's CPU) are printed here and compared in `make bench`;
these tests assert what must hold whatever the machine's speed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.chromium import (
    UI,
    cpu_seconds,
    reloaded,
    render_seconds,
    seen_seqs,
    wait,
    watch_seqs,
)
from tests.procs import Orchestrator, Proc, run_job
from ui_service import status_style
from ui_service.pages.queue import PAGE
from ui_service.pages.step_list import STEP_PAGE

pytestmark = pytest.mark.browser
DEADLINE = 90
TERMINAL = {pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_COMPLETED_WITH_FAILURES, pb.JOB_STATUS_FAILED,
            pb.JOB_STATUS_CANCELLED}



@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Orchestrator, UI]]:
    started: list[Proc] = []
    try:
        orch = Orchestrator(f"sqlite:///{tmp_path / 's.db'}", workspace=tmp_path)
        started.append(orch)
        ui = UI(orch.target)
        started.append(ui)
        yield orch, ui
    finally:
        for proc in reversed(started):
            proc.stop()


def run_to_end(target: str, toml: str) -> pb.Job:
    return run_job(target, DEADLINE, definition_toml=toml)


def text(driver: webdriver.Chrome, marker_css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, marker_css)
    return found[0].text if found else ""


def job_ids(driver: webdriver.Chrome) -> list[str]:
    """The queue's rows in screen order, read in one go (rows re-render)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('[data-job-id]')].map(e => e.dataset.jobId)")


def dom_statuses(driver: webdriver.Chrome) -> dict[str, str]:
    return driver.execute_script("""const out = {};
        document.querySelectorAll('[data-step-id]').forEach(e => out[e.dataset.stepId] = e.dataset.status);
        return out;""")


def test_paging_to_the_250th_of_300_jobs_and_searching_by_name(
        browser: webdriver.Chrome, stack: tuple[Orchestrator, UI]) -> None:
    orch, ui = stack
    with grpc.insecure_channel(orch.target) as ch:
        s = pb_grpc.OrchestratorServiceStub(ch)
        for n in range(300):
            name = "other" if n == 7 else "tiny"
            s.SubmitJob(pb.SubmitJobRequest(definition_toml=(
                f'name = "{name}"\n[steps.a]\ntype = "shell"\ncommands = ["true"]\n')),
                timeout=DEADLINE)
        ids, token = [], ""
        while True:
            page = s.ListJobs(pb.ListJobsRequest(page_size=100, page_token=token), timeout=DEADLINE)
            ids += [j.job_id for j in page.jobs]
            token = page.next_page_token
            if not token:
                break
    assert len(ids) == 300
    target = ids[249]  # the 250th newest: the last row of page 5
    browser.get(ui.url)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"[data-job-id='{ids[0]}']"), DEADLINE)
    for page in range(2, 6):
        browser.find_element(By.CSS_SELECTOR, ".sw-older").click()
        wait(browser, lambda d, p=page: text(d, ".sw-page").startswith(f"page {p} "), DEADLINE)
    first = (5 - 1) * PAGE
    assert text(browser, ".sw-page") == f"page 5 · jobs {first + 1}–{first + PAGE}"
    assert job_ids(browser) == ids[first:first + PAGE]  # the server's order, the server's page
    browser.find_element(By.CSS_SELECTOR, f"[data-job-id='{target}'] a").click()
    wait(browser, lambda d: d.current_url.endswith(f"/jobs/{target}"), DEADLINE)
    # Search by name: the one "other" job.
    browser.get(ui.url)
    box = browser.find_element(By.CSS_SELECTOR, ".sw-search input")
    box.send_keys("oth")
    wait(browser, lambda d: job_ids(d) == [ids[292]], DEADLINE)


def test_a_300_step_job_draws_a_page_of_rows_and_links_to_a_failure_on_a_later_page(
        browser: webdriver.Chrome, stack: tuple[Orchestrator, UI]) -> None:
    orch, ui = stack
    toml = 'name = "wide"\n[policy]\non_step_failure = "continue"\n' + "".join(
        f'[steps.s{i}]\ntype = "shell"\ncommands = ["{"false" if i == 260 else "true"}"]\n'
        for i in range(300))
    job = run_to_end(orch.target, toml)
    assert job.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES
    one = run_to_end(orch.target, 'name = "one"\n[steps.s]\ntype = "shell"\ncommands = ["true"]\n')
    small = render_seconds(browser, f"{ui.url}/jobs/{one.job_id}", "[data-step-id]", 1, DEADLINE)
    seconds = render_seconds(browser, f"{ui.url}/jobs/{job.job_id}", "[data-step-id]", STEP_PAGE,
                             DEADLINE)
    print(f"\n300-step job page: {seconds:.2f} s; 1-step job page: {small:.2f} s "
          f"(ratio {seconds / small:.1f}; `make bench` compares them)")
    server = {s.step_id: pb.StepStatus.Name(s.status) for s in job.steps}
    page = dom_statuses(browser)
    assert len(page) == STEP_PAGE and all(server[k] == v for k, v in page.items())
    # A failed job opens on its first failed step: s260, on the last page, selected.
    failed = next(s for s in job.steps if s.name == "s260")
    wait(browser, lambda d: f"steps 201–{min(300, 200 + STEP_PAGE)} of 300" in text(d, ".sw-pager"),
         DEADLINE)
    assert "sw-selected" in browser.find_element(By.ID, f"step-{failed.index}").get_attribute("class")
    # An earlier page, then the failed step's link at the top leads back to its page and row.
    browser.find_element(By.CSS_SELECTOR, ".sw-pager button").click()  # ‹
    wait(browser, lambda d: "steps 101–200 of 300" in text(d, ".sw-pager"), DEADLINE)
    page = dom_statuses(browser)
    assert len(page) == STEP_PAGE and all(server[k] == v for k, v in page.items())
    browser.find_element(By.LINK_TEXT, "s260").click()
    wait(browser, lambda d: d.find_elements(By.ID, f"step-{failed.index}"), DEADLINE)
    assert browser.find_element(By.ID, f"step-{failed.index}").get_attribute(
        "data-status") == "STEP_STATUS_FAILED"
    page = dom_statuses(browser)
    assert len(page) == STEP_PAGE and all(server[k] == v for k, v in page.items())
    assert "steps 201–300 of 300" in text(browser, ".sw-pager")


def page_seq(driver: webdriver.Chrome) -> str:
    """What the page shows now, for a failure message: its seq, connection and reloads."""
    return driver.execute_script("""const s = document.querySelector('[data-seq]');
        const c = document.querySelector('[data-connection]');
        return `data-seq=${s && s.dataset.seq} connection=${c && c.dataset.connection} `
             + `alive=${window.__swAlive} seen=${(window.__swSeen || []).length}`;""")


def test_the_page_keeps_up_with_a_2000_child_30_step_job_without_reloading(
        browser: webdriver.Chrome, stack: tuple[Orchestrator, UI], tmp_path: Path) -> None:
    orch, ui = stack
    go = tmp_path / "go"
    many = ", ".join(['"sleep 0.1"'] * 2000)  # several seconds of progress, not a blink
    # Every step waits for `go`, so the page is open and drawn before the load starts: it
    # is the live progress the page must keep up with, not a replay of a finished job.
    toml = ('name = "big"\n[policy]\non_step_failure = "continue"\n'
            f'[steps.gate]\ntype = "shell"\ncommands = ["while [ ! -f {go} ]; do sleep 0.05; done"]\n'
            f'[steps.many]\ntype = "shell"\nconcurrency = 32\ndepends = ["gate"]\n'
            f'commands = [{many}]\n' + "".join(
                f'[steps.s{i}]\ntype = "shell"\nconcurrency = 3\n'
                f'commands = ["sleep 0.{i % 7 + 2}", "true", "sleep 0.3"]\n'
                + (f'depends = ["s{i - 1}"]\n' if i % 3 else 'depends = ["gate"]\n')
                for i in range(29)))
    with grpc.insecure_channel(orch.target) as ch:
        job = pb_grpc.OrchestratorServiceStub(ch).SubmitJob(
            pb.SubmitJobRequest(definition_toml=toml), timeout=DEADLINE).job
    browser.get(f"{ui.url}/jobs/{job.job_id}")
    wait(browser, lambda d: len(dom_statuses(d)) == 31, DEADLINE)
    watch_seqs(browser)
    first = max((seq for seq, _ in seen_seqs(browser)), default=0)
    cpu0, t0 = cpu_seconds(browser), time.monotonic()
    go.touch()
    with grpc.insecure_channel(orch.target) as ch:
        s = pb_grpc.OrchestratorServiceStub(ch)
        for _ in s.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE * 2):
            pass
        final = s.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=DEADLINE).job
    assert final.status in TERMINAL
    # The page reaches the final seq, never having reloaded itself, and shows what the server says.
    try:
        wait(browser, lambda d: any(seq == final.head_seq for seq, _ in seen_seqs(d)), DEADLINE)
    except TimeoutException:
        pytest.fail(f"the page never showed seq {final.head_seq}: {page_seq(browser)}\n"
                    f"UI output:\n{ui.output[-3000:]}")
    assert not reloaded(browser)
    server = {st.step_id: pb.StepStatus.Name(st.status) for st in final.steps}
    wait(browser, lambda d: dom_statuses(d) == server, DEADLINE)
    many_step = next(st for st in final.steps if st.name == "many")
    assert many_step.children.completed == 2000
    # It drew the job as it went, not once at the end: seqs between the first and the last.
    seen = {seq for seq, _ in seen_seqs(browser)}
    assert len({seq for seq in seen if first < seq < final.head_seq}) >= 5, sorted(seen)
    used, took = cpu_seconds(browser) - cpu0, time.monotonic() - t0
    print(f"\nChromium CPU over the 2,000-child job: {used:.1f} s in {took:.1f} s "
          f"({100 * used / took:.0f} % of one core; {len(seen_seqs(browser))} redraws "
          f"for {final.head_seq} events)")


def status_colour(status: int) -> str:
    return status_style.look(status_style.STEP, status).colour


def chart_option(driver: webdriver.Chrome, css: str) -> dict | None:
    """The option an ECharts element draws from, read from the chart itself."""
    return driver.execute_script("""const el = document.querySelector(arguments[0]);
        const c = el && getElement(el) && getElement(el).chart;
        return c ? c.getOption() : null;""", css)


def test_the_graph_and_the_attempt_timeline_draw_the_servers_statuses(
        browser: webdriver.Chrome, stack: tuple[Orchestrator, UI], tmp_path: Path) -> None:
    orch, ui = stack
    mark = tmp_path / "flaky.mark"
    job = run_to_end(orch.target, (
        'name = "shapes"\n[policy]\non_step_failure = "continue"\n'
        f'[steps.flaky]\ntype = "shell"\nmax_attempts = 2\ncommands = ["test -f {mark} || '
        f'{{ touch {mark}; exit 3; }}"]\n'
        '[steps.after]\ntype = "shell"\ndepends = ["flaky"]\ncommands = ["true"]\n'
        '[steps.broken]\ntype = "shell"\ncommands = ["exit 4"]\n'
        '[steps.never]\ntype = "shell"\ndepends = ["broken"]\ncommands = ["true"]\n'))
    by_name = {s.name: s for s in job.steps}
    assert by_name["flaky"].attempt == 2 and by_name["flaky"].status == pb.STEP_STATUS_COMPLETED
    browser.get(f"{ui.url}/jobs/{job.job_id}")

    def nodes(d: webdriver.Chrome) -> dict[str, tuple[str, str]]:
        opt = chart_option(d, ".sw-graph")
        return {n["name"]: (n["status"], n["itemStyle"]["color"])
                for n in opt["series"][0]["data"]} if opt else {}

    want = {s.name: (pb.StepStatus.Name(s.status), status_colour(s.status)) for s in job.steps}
    wait(browser, lambda d: nodes(d) == want, DEADLINE)
    links = chart_option(browser, ".sw-graph")["series"][0]["links"]
    assert {(x["source"], x["target"]) for x in links} == {("flaky", "after"), ("broken", "never")}
    # The timeline reads the job's log when opened: flaky's first attempt failed, then it ran again.
    def expanded(d: webdriver.Chrome) -> bool:
        return bool(d.find_elements(By.CSS_SELECTOR, ".sw-timeline-box.q-expansion-item--expanded"))

    # Open the timeline; a click a loaded machine's page did not take is made again (10 s each).
    for _ in range(DEADLINE // 10):
        # (a script's click: the graph above may still be growing, moving the header)
        browser.execute_script("arguments[0].click()", browser.find_element(
            By.CSS_SELECTOR, ".sw-timeline-box .q-item"))
        try:
            wait(browser, expanded, 10)
            break
        except TimeoutException:
            continue
    assert expanded(browser), "the timeline did not open"

    def bars(d: webdriver.Chrome) -> dict[str, str]:
        opt = chart_option(d, ".sw-timeline")
        if not opt or not opt["yAxis"][0]["data"]:
            return {}
        return {name: bar["itemStyle"]["color"] for name, bar in
                zip(opt["yAxis"][0]["data"], opt["series"][1]["data"], strict=True)}

    wait(browser, lambda d: set(bars(d)) == {"flaky #1", "flaky #2", "after #1", "broken #1"},
         DEADLINE)
    got = bars(browser)
    assert got["flaky #1"] == status_colour(pb.STEP_STATUS_FAILED)
    assert got["flaky #2"] == status_colour(pb.STEP_STATUS_COMPLETED)
    assert got["broken #1"] == status_colour(pb.STEP_STATUS_FAILED)
    # Each bar is an attempt record exactly as GetJob carries it (Step.attempts): its start
    # (from the first attempt's), its length, its status and its failure's message.
    records = {f"{s.name} #{r.attempt}": r for s in job.steps for r in s.attempts}
    assert records["flaky #1"].status == pb.STEP_STATUS_FAILED
    assert records["flaky #1"].failure.reason == pb.FAILURE_REASON_CHILD_FAILURES_EXCEEDED
    assert records["flaky #2"].status == pb.STEP_STATUS_COMPLETED
    opt = chart_option(browser, ".sw-timeline")
    origin = min(r.started_at.ToMicroseconds() for r in records.values())
    drawn = zip(opt["yAxis"][0]["data"], opt["series"][0]["data"], opt["series"][1]["data"],
                strict=True)
    for name, offset, span in drawn:
        r = records[name]
        start, end = r.started_at.ToMicroseconds(), r.finished_at.ToMicroseconds()
        assert offset == round((start - origin) / 1e6, 3), name
        assert span["value"] == round((end - start) / 1e6, 3), name
        assert span["itemStyle"]["color"] == status_colour(r.status), name
        assert (r.failure.message in span["tip"]) if r.HasField("failure") else True, name
