"""Webhooks as pure rules: which URLs pass, what a subscription matches, the signature,
and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from orchestrator_service.statuses import JobStatus
from orchestrator_service.webhooks import (
    DeliveryState,
    NotifyEvent,
    SubscriptionSpec,
    WebhookPolicy,
    after_failure,
    check_subscription,
    check_url,
    matches,
    sign,
)

ANY = WebhookPolicy()
LOCAL = WebhookPolicy(allow_hosts=("127.0.0.1", "*.example.com"))


@pytest.mark.parametrize("url", [
    "https://hooks.example.com/stepwatch", "http://10.0.0.5:8080/x?y=1", "https://[2001:db8::1]/h"])
def test_urls_that_pass(url: str) -> None:
    assert check_url(url, ANY) == []


@pytest.mark.parametrize(("url", "why"), [
    ("", "required"), ("ftp://example.com/x", "http"), ("file:///etc/passwd", "http"),
    ("javascript:alert(1)", "http"), ("https://user:pw@example.com/", "credentials"),
    ("https://user@example.com/", "credentials"), ("https:///nohost", "no host"),
    ("http://example.com/a b", "spaces"), ("http://example.com/\nx", "control"),
    ("http://example.com:99999/", "URL"), ("http://example.com/#frag", "fragment"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("https://example.com/" + "a" * 2100, "2000"),
])
def test_urls_refused_with_a_reason(url: str, why: str) -> None:
    bad = check_url(url, ANY)
    assert len(bad) == 1 and bad[0].field == "url" and why in bad[0].description


@pytest.mark.parametrize(("url", "ok"), [
    ("http://127.0.0.1:9/x", True), ("https://a.example.com/", True),
    ("https://deep.a.example.com/", True), ("https://example.com/", False),
    ("https://evil.com/?x=.example.com", False), ("https://example.com.evil.com/", False),
    ("http://localhost/", False), ("http://169.254.169.254/", False)])
def test_the_allow_list_is_the_only_way_out(url: str, ok: bool) -> None:
    assert (check_url(url, LOCAL) == []) is ok


def test_a_subscription_names_every_problem() -> None:
    bad = check_subscription(SubscriptionSpec("ftp://x", frozenset(),
                                              frozenset({JobStatus.RUNNING})), ANY)
    assert {v.field for v in bad} == {"url", "events", "job_statuses"}


def test_matching() -> None:
    failed_only = SubscriptionSpec("https://h/", frozenset({NotifyEvent.JOB_FINISHED}),
                                   frozenset({JobStatus.FAILED}), "nightly")
    assert matches(failed_only, NotifyEvent.JOB_FINISHED, "nightly", JobStatus.FAILED)
    assert not matches(failed_only, NotifyEvent.JOB_FINISHED, "nightly", JobStatus.COMPLETED)
    assert not matches(failed_only, NotifyEvent.JOB_FINISHED, "other", JobStatus.FAILED)
    assert not matches(failed_only, NotifyEvent.STEP_FAILED, "nightly", JobStatus.RUNNING)
    steps = SubscriptionSpec("https://h/", frozenset({NotifyEvent.STEP_FAILED}))
    assert matches(steps, NotifyEvent.STEP_FAILED, "any", JobStatus.RUNNING)


def test_the_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"deliveryId":"abc"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign("s3cret", body) == "sha256=" + expected
    assert sign("s3cret", body + b" ") != sign("s3cret", body)


def test_backoff_doubles_up_to_the_cap_and_stops_at_the_limit() -> None:
    policy = WebhookPolicy(max_attempts=5, backoff_s=2.0, max_backoff_s=10.0)
    delays = [after_failure(policy, n, 0).next_at for n in range(1, 5)]
    assert delays == [2_000_000, 4_000_000, 8_000_000, 10_000_000]
    assert after_failure(policy, 5, 0) == after_failure(policy, 9, 0)
    assert after_failure(policy, 5, 0).state == DeliveryState.FAILED
    assert after_failure(policy, 5, 0).next_at is None
