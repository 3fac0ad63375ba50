"""The schedules and webhooks pages in real Chromium, against real orchestrator and UI
processes: next run, the last job's badge as the server sent it, pause/resume in place;
the delivery log's states as the server recorded them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.chromium import UI, page_width
from tests.procs import Orchestrator, Proc
from tests.support.receiver import receiver

pytestmark = pytest.mark.browser
DEADLINE = 60
REPO = Path(__file__).resolve().parents[2]


def attr(d: webdriver.Chrome, css: str, name: str) -> str | None:
    found = d.find_elements(By.CSS_SELECTOR, css)
    return found[0].get_attribute(name) if found else None


def test_schedules_and_webhooks_pages(browser: webdriver.Chrome, tmp_path: Path,
                                      procs: list[Proc]) -> None:
    orch = Orchestrator(f"sqlite:///{tmp_path / 'a.db'}", workspace=tmp_path,
                        extra=["--webhook-allow-host", "127.0.0.1", "--webhook-backoff", "0.2",
                               "--webhook-max-attempts", "2"])
    procs.append(orch)
    ui = UI(orch.target)
    procs.append(ui)
    with receiver() as hooks, grpc.insecure_channel(orch.target) as ch:
        hooks.script["/down"] = [500, 500]
        stub = pb_grpc.OrchestratorServiceStub(ch)
        stub.CreateSubscription(pb.CreateSubscriptionRequest(
            url=hooks.url("/ok"), events=[pb.NOTIFY_EVENT_JOB_FINISHED]), timeout=DEADLINE)
        stub.CreateSubscription(pb.CreateSubscriptionRequest(
            url=hooks.url("/down"), events=[pb.NOTIFY_EVENT_JOB_FINISHED]), timeout=DEADLINE)
        s = stub.CreateSchedule(pb.CreateScheduleRequest(
            definition_name="greet", cron="0 6 * * *", time_zone="Europe/Berlin", paused=True),
            timeout=DEADLINE).schedule
        job = stub.TriggerSchedule(pb.TriggerScheduleRequest(schedule_id=s.schedule_id),
                                   timeout=DEADLINE).job
        for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=DEADLINE):
            pass

        row = f"[data-schedule-id='{s.schedule_id}']"
        browser.get(f"{ui.url}/schedules")
        WebDriverWait(browser, DEADLINE).until(lambda d: attr(d, row, "data-paused") == "true")
        WebDriverWait(browser, DEADLINE).until(
            lambda d: attr(d, f"{row} .sw-badge", "data-status") == "JOB_STATUS_COMPLETED")
        text = browser.find_element(By.CSS_SELECTOR, row).text
        assert "greet" in text and "0 6 * * * (Europe/Berlin)" in text and "paused" in text
        assert job.job_id[:8] in text
        browser.find_element(By.CSS_SELECTOR, f"{row} button").click()  # Resume
        WebDriverWait(browser, DEADLINE).until(lambda d: attr(d, row, "data-paused") == "false")
        got = stub.GetSchedule(pb.GetScheduleRequest(schedule_id=s.schedule_id),
                               timeout=DEADLINE).schedule
        assert not got.paused  # the click went to the server, not only the page
        # 06:00 in Berlin, shown in the UI's local time, with how far ahead it is.
        local = got.next_run_time.ToDatetime(dt.UTC).astimezone()
        assert local.astimezone(ZoneInfo("Europe/Berlin")).hour == 6
        WebDriverWait(browser, DEADLINE).until(
            lambda d: f"{local:%Y-%m-%d %H:%M:%S} (in " in d.find_element(By.CSS_SELECTOR, row).text)

        browser.get(f"{ui.url}/webhooks")
        WebDriverWait(browser, DEADLINE).until(lambda d: sorted(
            e.get_attribute("data-state") for e in d.find_elements(
                By.CSS_SELECTOR, "[data-delivery-id]")) == ["delivered", "failed"])
        failed = browser.find_element(By.CSS_SELECTOR, "[data-state='failed']").text
        assert "HTTP 500" in failed and "/down" in failed
        assert hooks.url("/ok") in browser.find_element(By.TAG_NAME, "body").text

        # A phone's width: both pages fit without scrolling sideways, every row still there.
        browser.set_window_size(390, 900)
        for path, css, count in (("/schedules", row, 1), ("/webhooks", "[data-delivery-id]", 2)):
            browser.get(f"{ui.url}{path}")
            WebDriverWait(browser, DEADLINE).until(
                lambda d, c=css, n=count: len(d.find_elements(By.CSS_SELECTOR, c)) == n)
            scroll, inner = page_width(browser)
            assert scroll <= inner, f"{path} at 390 px: {scroll} > {inner}"
            browser.save_screenshot(str(REPO / "docs" / f"{path[1:]}_390.png"))
        browser.set_window_size(1280, 900)

        # The job names its schedule and nominal time on its page.
        browser.get(f"{ui.url}/jobs/{job.job_id}")
        stamp = job.nominal_time.ToDatetime(dt.UTC).astimezone()
        WebDriverWait(browser, DEADLINE).until(
            lambda d: f"scheduled ({s.schedule_id[:8]}) for {stamp:%Y-%m-%d %H:%M:%S}"
            in d.find_element(By.TAG_NAME, "body").text)
