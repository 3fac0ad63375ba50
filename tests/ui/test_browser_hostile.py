"""No script from data: a hostile corpus as every kind of server string a page shows (job and
step names, the description, failure messages, stdout and stderr, tags, file names, document
attributes), on the queue page, the job page, the step panel and its log, the graph and the
timeline of attempts with their tooltips shown. Nothing may run, and the text must be there,
shown as text."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.common.by import By

from stepwatch.v1 import orchestrator_pb2 as pb
from tests.chromium import UI, wait
from tests.procs import Orchestrator, Proc, run_job

pytestmark = pytest.mark.browser
DEADLINE = 60

# Each one sets window.__pwned (or opens a dialog) if it ever runs.
CORPUS = [
    '<img src=x onerror="window.__pwned=(window.__pwned||[]).concat(1)">',
    "</script><script>window.__pwned=(window.__pwned||[]).concat(2)</script>",
    "<svg/onload=window.__pwned=(window.__pwned||[]).concat(3)>",
    "javascript:window.__pwned=(window.__pwned||[]).concat(4)",
    "[click](javascript:window.__pwned=(window.__pwned||[]).concat(5)) **bold**",
    "{{constructor.constructor('window.__pwned=(window.__pwned||[]).concat(6)')()}}",
    "${alert(7)}`<b>tick</b>`",
    "<iframe srcdoc=\"<script>parent.__pwned=8</script>\"></iframe>",
]
LONG = "<b>" + "A" * 3_000 + "</b>"  # a description holds at most 4,096


def toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Orchestrator, UI, Path]]:
    started: list[Proc] = []
    try:
        orch = Orchestrator(f"sqlite:///{tmp_path / 'h.db'}", workspace=tmp_path)
        started.append(orch)
        ui = UI(orch.target)
        started.append(ui)
        yield orch, ui, tmp_path
    finally:
        for proc in reversed(started):
            proc.stop()


def hostile_job(workspace: Path) -> str:
    """A job whose every string is hostile: it ends COMPLETED_WITH_FAILURES, with a retried
    step (two attempts on the timeline, the first failed with hostile output)."""
    docs = workspace / "docs"
    docs.mkdir()
    for i, text in enumerate(CORPUS[:3] + CORPUS[5:7]):  # names without '/'
        (docs / f"{i}{text.replace('/', '_')}.md").write_text(text + "\n")
    script = workspace / "say.sh"
    script.write_text("".join(f"printf '%s\\n' {shlex.quote(t)}\nprintf '%s\\n' {shlex.quote(t)} >&2\n"
                              for t in CORPUS) + f"echo {shlex.quote(LONG)} >&2\n")
    mark = workspace / "flaky.mark"
    evil = CORPUS[0]
    return (
        f"name = {toml_string('job ' + CORPUS[1])}\n"
        f"description = {toml_string(' '.join(CORPUS) + LONG)}\n"
        '[policy]\non_step_failure = "continue"\n'
        f"[steps.{toml_string('scan ' + evil)}]\n"
        'type = "scan_files"\nroot = "docs"\ninclude = ["*.md"]\n'
        f"tags = [{toml_string(CORPUS[2])}, {toml_string(CORPUS[4])}]\n"
        f"[steps.{toml_string('fail ' + CORPUS[3])}]\n"
        f'type = "shell"\ncommands = ["sh say.sh; exit 3", "sh say.sh"]\n'
        f"[steps.{toml_string('flaky ' + CORPUS[7])}]\n"
        f'type = "shell"\nmax_attempts = 2\n'
        f'commands = ["sh say.sh; test -f {mark} || {{ touch {mark}; exit 4; }}"]\n')


def no_script_ran(driver: webdriver.Chrome) -> None:
    assert driver.execute_script("return window.__pwned === undefined"), \
        driver.execute_script("return window.__pwned")
    try:
        alert = driver.switch_to.alert
        raise AssertionError(f"a dialog opened: {alert.text!r}")
    except NoAlertPresentException:
        pass


def body_text(driver: webdriver.Chrome) -> str:
    return driver.execute_script("return document.body.textContent")


def show_every_tooltip(driver: webdriver.Chrome, css: str) -> list[str]:
    """Show the tooltip of every data item of the chart, and collect what it showed: its text,
    and the tags of any element inside it (none may come from data)."""
    return driver.execute_script("""
        const el = document.querySelector(arguments[0]);
        const chart = el && getElement(el) && getElement(el).chart;
        if (!chart) return null;
        const out = [];
        const series = chart.getOption().series;
        series.forEach((s, si) => (s.data || []).forEach((_, di) => {
            chart.dispatchAction({type: 'showTip', seriesIndex: si, dataIndex: di});
            el.querySelectorAll('div').forEach(d => {
                if (d.style.position === 'absolute' && d.textContent && d.style.display !== 'none') {
                    const tags = [...d.querySelectorAll('*')].map(x => x.tagName.toLowerCase())
                        .filter(t => !['span', 'br', 'div'].includes(t));
                    out.push(d.textContent + (tags.length ? ' ELEMENTS:' + tags.join(',') : ''));
                }
            });
        }));
        return out;""", css)


def open_expansion(driver: webdriver.Chrome, box: str) -> None:
    for _ in range(DEADLINE // 10):
        if driver.find_elements(By.CSS_SELECTOR, f"{box}.q-expansion-item--expanded"):
            return
        driver.execute_script("arguments[0].click()", driver.find_element(
            By.CSS_SELECTOR, f"{box} .q-item"))  # a layout still moving cannot take it
        try:
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR,
                                                   f"{box}.q-expansion-item--expanded"), 10)
            return
        except (AssertionError, TimeoutException):
            continue
    raise AssertionError(f"{box} did not open")


def test_a_hostile_corpus_is_text_everywhere_and_runs_nothing(
        browser: webdriver.Chrome, stack: tuple[Orchestrator, UI, Path]) -> None:
    orch, ui, workspace = stack
    job = run_job(orch.target, definition_toml=hostile_job(workspace))
    assert job.status == pb.JOB_STATUS_COMPLETED_WITH_FAILURES, job
    steps = {s.name.split(" ", 1)[0]: s for s in job.steps}
    assert steps["fail"].status == pb.STEP_STATUS_FAILED and steps["flaky"].attempt == 2
    assert LONG[-400:] in steps["fail"].failure.message  # stderr's tail, as the server sent it

    browser.get(f"{ui.url}/")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"[data-job-id='{job.job_id}']"),
         DEADLINE)
    wait(browser, lambda d: CORPUS[1] in body_text(d), DEADLINE)  # the name, as text
    no_script_ran(browser)

    browser.get(f"{ui.url}/jobs/{job.job_id}")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-step-id]")) == 3, DEADLINE)
    wait(browser, lambda d: CORPUS[0] in body_text(d) and CORPUS[3] in body_text(d), DEADLINE)
    no_script_ran(browser)
    # The graph (open for a small job) and the timeline, every tooltip shown.
    open_expansion(browser, ".sw-graph-box")
    wait(browser, lambda d: show_every_tooltip(d, ".sw-graph"), DEADLINE)
    graph_tips = show_every_tooltip(browser, ".sw-graph")
    assert any(CORPUS[0] in t for t in graph_tips), graph_tips
    assert not any("ELEMENTS:" in t for t in graph_tips), graph_tips
    open_expansion(browser, ".sw-timeline-box")

    def attempt_tips(d: webdriver.Chrome) -> list[str]:
        tips = show_every_tooltip(d, ".sw-timeline") or []
        return tips if any("flaky" in t and "exit code 4" in t for t in tips) else []

    tips = wait(browser, attempt_tips, DEADLINE)
    assert any(CORPUS[7] in t for t in tips), tips  # the failed attempt's note, as text
    assert not any("ELEMENTS:" in t for t in tips), tips
    no_script_ran(browser)
    # Each step's panel: children (file names, messages), documents' attributes, its log.
    for step in job.steps:
        browser.get(f"{ui.url}/jobs/{job.job_id}?step={quote(step.name, safe='')}&child=0")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".nicegui-log"), DEADLINE)
        if step.name.startswith(("fail", "flaky")):
            wait(browser, lambda d: CORPUS[5] in d.execute_script(
                "const e = document.querySelector('.nicegui-log'); return e ? e.textContent : ''"),
                DEADLINE)
        else:
            wait(browser, lambda d: "0<img src=x onerror=" in body_text(d), DEADLINE)
        no_script_ran(browser)
