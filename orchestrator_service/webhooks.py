"""Webhooks, as pure rules: which URLs may be called, what a subscription matches, how a
body is signed, when a failed delivery is tried again.

I/O (the outbox in the store, the HTTP sender) lives in store/outbox.py and notifier.py.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .definitions import DefinitionError, Violation, clip
from .statuses import JobStatus

__all__ = ["DeliveryState", "InvalidSubscription", "NotifyEvent", "Retry", "SubscriptionSpec",
           "WebhookPolicy", "after_failure", "check_subscription", "check_url", "host_allowed",
           "matches", "sign"]

MAX_URL = 2000
SIGNATURE_HEADER = "X-Stepwatch-Signature"


class InvalidSubscription(DefinitionError):
    """A subscription this server refuses; every reason at once."""

    def public_message(self) -> str:
        return f"invalid subscription: {clip(str(self), 1000)}"


class NotifyEvent(enum.IntEnum):
    """The contract's NotifyEvent numbers."""

    JOB_FINISHED = 1
    STEP_FAILED = 2


class DeliveryState(enum.IntEnum):
    """The contract's DeliveryState numbers."""

    PENDING = 1
    DELIVERED = 2
    FAILED = 3


@dataclass(frozen=True)
class SubscriptionSpec:
    url: str
    events: frozenset[NotifyEvent]
    job_statuses: frozenset[JobStatus] = frozenset()
    definition_name: str = ""
    description: str = ""


@dataclass(frozen=True)
class WebhookPolicy:
    """Where webhooks may go, and how deliveries are retried (the server's flags)."""

    #: Hosts a URL may name (exact, or "*.example.com"); empty: any host.
    allow_hosts: tuple[str, ...] = ()
    max_attempts: int = 8
    backoff_s: float = 5.0
    max_backoff_s: float = 3600.0
    timeout_s: float = 10.0


def host_allowed(host: str, allow: Sequence[str]) -> bool:
    if not allow:
        return True
    host = host.lower().rstrip(".")
    for pattern in allow:
        p = pattern.lower().rstrip(".")
        if p == host or (p.startswith("*.") and host.endswith(p[1:])):
            return True
    return False


def check_url(url: str, policy: WebhookPolicy) -> list[Violation]:
    """Why the URL may not be a webhook's (empty: it may)."""
    if not url:
        return [Violation("url", "is required")]
    if len(url) > MAX_URL:
        return [Violation("url", f"is over {MAX_URL} characters")]
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        return [Violation("url", "holds spaces or control characters")]
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        return [Violation("url", f"is not a URL: {exc}")]
    if parts.scheme not in ("http", "https"):
        return [Violation("url", "must be http:// or https://")]
    if parts.username is not None or parts.password is not None:
        return [Violation("url", "must not carry credentials (user:password@); sign with the "
                                 "subscription's secret instead")]
    if not host:
        return [Violation("url", "names no host")]
    if parts.fragment:
        return [Violation("url", "must not have a #fragment")]
    if not host_allowed(host, policy.allow_hosts):
        return [Violation("url", f"host {host!r} is not allowed by this server's "
                                 "--webhook-allow-host")]
    if not policy.allow_hosts and _link_local(host):
        return [Violation("url", f"host {host!r} is link-local (cloud metadata); allow it "
                                 "explicitly with --webhook-allow-host")]
    return []


def _link_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_link_local
    except ValueError:
        return False


def check_subscription(spec: SubscriptionSpec, policy: WebhookPolicy) -> list[Violation]:
    bad = check_url(spec.url, policy)
    if not spec.events:
        bad.append(Violation("events", "name at least one event"))
    for s in spec.job_statuses:
        if not s.terminal:
            bad.append(Violation("job_statuses", f"{s.name} is not a terminal status"))
    if NotifyEvent.JOB_FINISHED not in spec.events and spec.job_statuses:
        bad.append(Violation("job_statuses", "only apply to NOTIFY_EVENT_JOB_FINISHED"))
    if len(spec.definition_name) > 200:
        bad.append(Violation("definition_name", "is over 200 characters"))
    if len(spec.description) > 2000:
        bad.append(Violation("description", "is over 2000 characters"))
    return bad


def matches(spec: SubscriptionSpec, event: NotifyEvent, definition_name: str,
            status: JobStatus) -> bool:
    """Whether the subscription is told of ``event`` of a job of ``definition_name`` that
    is (or, for a job event, ended) ``status``."""
    if event not in spec.events:
        return False
    if spec.definition_name and spec.definition_name != definition_name:
        return False
    return not (event == NotifyEvent.JOB_FINISHED and spec.job_statuses
                and status not in spec.job_statuses)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the HMAC-SHA256 of the body, in hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Retry:
    """After a failed try: try again at ``next_at`` (µs), or give up (None)."""

    state: DeliveryState
    next_at: int | None


def after_failure(policy: WebhookPolicy, attempts: int, now: int) -> Retry:
    """Exponential backoff: backoff_s, 2x, 4x ... (capped), until max_attempts tries."""
    if attempts >= policy.max_attempts:
        return Retry(DeliveryState.FAILED, None)
    delay = min(policy.max_backoff_s, policy.backoff_s * 2 ** (attempts - 1))
    return Retry(DeliveryState.PENDING, now + int(delay * 1e6))
