"""Real headless Chromium against a real UI process, and what the browser tests and
`make bench` measure with it: render time, how far the screen is behind the stream, the
browser's CPU, and whether a page reloaded itself. No fixed sleeps: every wait has a deadline."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from tests.procs import READY, REPO, Proc, free_port

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
TICK = os.sysconf("SC_CLK_TCK")

# Records, in the page, when each data-seq value first reached the DOM (Date.now(), ms).
SEQ_OBSERVER = """
window.__swSeen = [];
window.__swAlive = 1;
const note = el => { const s = Number(el.dataset.seq); if (s) window.__swSeen.push([s, Date.now()]); };
document.querySelectorAll('[data-seq]').forEach(note);
new MutationObserver(ms => ms.forEach(m => note(m.target))).observe(
  document.body, {subtree: true, attributes: true, attributeFilter: ['data-seq']});
"""


class UI(Proc):
    def __init__(self, target: str, *extra: str) -> None:
        self.port = free_port()
        super().__init__([sys.executable, "-m", "ui_service", "--port", str(self.port),
                          "--target", target, *extra], cwd=REPO)
        self.wait_for(READY)
        self.url = f"http://127.0.0.1:{self.port}"
        # The ready line comes at start-up, a moment before uvicorn takes connections.
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.popen.poll() is not None:
                    raise RuntimeError(f"the UI does not take connections:\n{self.output}") from None
                time.sleep(0.05)


def start_browser(width: int = 1500, height: int = 1000) -> webdriver.Chrome:
    for path in (CHROMIUM, DRIVER):
        assert os.path.exists(path), f"{path} missing: `make test` installs chromium + chromium-driver"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--window-size={width},{height}",
                f"--user-data-dir={tempfile.mkdtemp(prefix='sw-chrome-')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_page_load_timeout(60)
    return driver


def page_width(driver: webdriver.Chrome) -> tuple[int, int]:
    """(the page's scroll width, the window's inner width): a page that fits has the first
    no larger than the second (nothing to scroll sideways)."""
    return (driver.execute_script("return document.documentElement.scrollWidth"),
            driver.execute_script("return window.innerWidth"))


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [int(c) for t in tasks
                for c in (t / "children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(driver: webdriver.Chrome) -> float:
    """User + system CPU of every live Chromium process (the driver's descendants)."""
    root = driver.service.process.pid
    todo, total = _children(root), 0.0
    while todo:
        pid = todo.pop()
        todo += _children(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return total


def wait(driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], object],
         timeout: float = 60) -> Any:
    """The first truthy value of ``check``, polled until ``timeout``."""
    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(check)


def render_seconds(driver: webdriver.Chrome, url: str, rows_css: str, count: int,
                   timeout: float = 60) -> float:
    """From navigation to `count` rows matching the selector, all with a data-status."""
    start = time.perf_counter()
    driver.get(url)
    wait(driver, lambda d: d.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(e => e.dataset.status)"
        ".length", rows_css) >= count, timeout)
    return time.perf_counter() - start


def watch_seqs(driver: webdriver.Chrome) -> None:
    """Start recording when each data-seq shows (call once the page is loaded)."""
    driver.execute_script(SEQ_OBSERVER)


def seen_seqs(driver: webdriver.Chrome) -> list[tuple[int, float]]:
    """(seq, wall-clock seconds) of each seq as it reached the DOM, in order."""
    return [(int(s), t / 1000) for s, t in driver.execute_script("return window.__swSeen || []")]


def reloaded(driver: webdriver.Chrome) -> bool:
    """Whether the page reloaded since `watch_seqs` (a reload drops the page's globals)."""
    return driver.execute_script("return window.__swAlive") != 1


@dataclass(frozen=True)
class Lag:
    events: int
    p50: float
    p99: float
    worst: float


def lag(emitted: dict[int, float], seen: list[tuple[int, float]]) -> Lag:
    """For each event: from its emitted_at until the screen first showed its seq or a later one.

    Events never shown before the sampling stopped are counted as missed by the caller
    (``Lag.events`` against ``len(emitted)``)."""
    by_seq = sorted(seen)
    first_at = [0.0] * len(by_seq)  # first_at[i]: earliest time any seq >= by_seq[i][0] showed
    best = float("inf")
    for i in range(len(by_seq) - 1, -1, -1):
        best = min(best, by_seq[i][1])
        first_at[i] = best
    delays, k = [], 0
    for seq in sorted(emitted):
        while k < len(by_seq) and by_seq[k][0] < seq:
            k += 1
        if k == len(by_seq):
            break
        delays.append(max(0.0, first_at[k] - emitted[seq]))
    if not delays:
        return Lag(0, float("inf"), float("inf"), float("inf"))
    delays.sort()
    return Lag(len(delays), delays[len(delays) // 2],
               delays[min(len(delays) - 1, int(len(delays) * 0.99))], delays[-1])
