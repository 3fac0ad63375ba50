"""The notifier: sends the outbox's due deliveries, one claimed attempt at a time.

At least once: a delivery is committed with its cause (store/outbox.py) and stays due
until a receiver answers 2xx or the retry limit is reached. One attempt is sent by one
replica: the claim counts it and names the sender under the row's lock, and a claim
too old to finish its send before it expires is not sent. A process killed mid-send
leaves the attempt claimed: it is tried again once the claim expires (at start, on
SQLite, where only this process sends). The receiver deduplicates on the delivery id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from google.protobuf import json_format

from stepwatch.v1 import orchestrator_pb2 as pb

from . import codec
from .schedules import Clock
from .store import JobNotFound, Store, StoreUnavailable, now_us
from .store.outbox import Claim
from .webhooks import (
    SIGNATURE_HEADER,
    DeliveryState,
    NotifyEvent,
    WebhookPolicy,
    after_failure,
    check_url,
    sign,
)

__all__ = ["Notifier", "Response", "Sender", "http_sender"]

log = logging.getLogger(__name__)
BATCH = 20
OUTCOME = {DeliveryState.DELIVERED: "delivered", DeliveryState.PENDING: "retry",
           DeliveryState.FAILED: "failed"}
EVENT_NAMES = {NotifyEvent.JOB_FINISHED: "job.finished", NotifyEvent.STEP_FAILED: "step.failed"}


@dataclass(frozen=True)
class Response:
    status_code: int  # 0: no answer
    error: str = ""


#: POST (url, body, headers) -> what came back.
Sender = Callable[[str, bytes, dict[str, str]], Awaitable[Response]]


def http_sender(timeout_s: float) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    """A sender over one HTTP client (no redirects, no proxies from the environment), and
    how to close it."""
    client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False)

    async def send(url: str, body: bytes, headers: dict[str, str]) -> Response:
        try:
            r = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Response(0, f"{type(exc).__name__}: {exc}"[:500])
        return Response(r.status_code, "" if 200 <= r.status_code < 300
                        else f"HTTP {r.status_code}: {r.text[:200]}")

    return send, client.aclose


class Notifier:
    def __init__(self, store: Store, owner: str, policy: WebhookPolicy,
                 clock: Clock = now_us, poll_s: float = 1.0,
                 sender: Sender | None = None,
                 on_attempt: Callable[[str], None] | None = None) -> None:
        """``on_attempt``: told each attempt's outcome (delivered, retry, failed)."""
        self.store = store
        self.owner = owner
        self.policy = policy
        self.clock = clock
        self.poll_s = poll_s
        self.on_attempt = on_attempt
        self._close: Callable[[], Awaitable[None]] | None = None
        self._sender = sender  # made at the first send: most processes never send one
        self._wake = asyncio.Event()
        #: How long a claim lasts: a send (its timeout) fits in it twice over.
        self.claim_us = int((2 * policy.timeout_s + 1) * 1e6)

    def wake(self) -> None:
        """Something was committed that may have queued deliveries."""
        self._wake.set()

    async def run(self) -> None:
        if self.store.holding.recovers_at_start:
            # One process per database: every claim left is a dead predecessor's.
            released = await self.store.automation.release_claims()
            if released:
                log.warning("notifier: %d webhook attempt(s) were cut off by the last stop; "
                            "sending them again", released)
        while True:
            try:
                sent = await self.round()
            except StoreUnavailable as exc:
                log.warning("notifier: storage unavailable (%s); trying again", exc)
                sent = 0
            except Exception:
                log.exception("notifier: a round failed")
                sent = 0
            if sent:
                continue
            self._wake.clear()
            # Woken by a local commit; other replicas' deliveries are found by this poll.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def round(self) -> int:
        """Claim and send what is due now; how many attempts were made."""
        claims = await self.store.automation.claim_deliveries(
            self.owner, self.clock(), self.claim_us, BATCH)
        await asyncio.gather(*(self._attempt(c) for c in claims))
        return len(claims)

    async def _attempt(self, claim: Claim) -> None:
        d = claim.delivery
        try:
            job = await self.store.reads.get_job(d.job_id)
        except JobNotFound:
            await self._record(claim, DeliveryState.FAILED, 0, "the job was deleted")
            return
        bad = check_url(claim.url, self.policy)
        if bad:  # the server's allow-list changed since the subscription was made
            await self._record(claim, DeliveryState.FAILED, 0, bad[0].description)
            return
        now = self.clock()
        payload = pb.WebhookPayload(delivery_id=d.delivery_id, subscription_id=d.subscription_id,
                                    event=int(d.event), attempt=d.attempts,  # type: ignore[arg-type]
                                    job=codec.job(job))
        payload.sent_at.FromMicroseconds(now)
        if d.step_id:
            for s in job.steps:
                if s.step_id == d.step_id:
                    payload.step.CopyFrom(codec.step(s))
        body = json_format.MessageToJson(payload, indent=None).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "Stepwatch-Webhook/1",
                   SIGNATURE_HEADER: sign(claim.secret, body),
                   "X-Stepwatch-Delivery": d.delivery_id, "X-Stepwatch-Event": EVENT_NAMES[d.event],
                   "X-Stepwatch-Attempt": str(d.attempts),
                   "X-Stepwatch-Timestamp": str(now // 1_000_000)}
        if now + self.policy.timeout_s * 1e6 > claim.expires_at:
            return  # too late to finish within the claim: the next claim tries it
        if self._sender is None:
            self._sender, self._close = http_sender(self.policy.timeout_s)
        response = await self._sender(claim.url, body, headers)
        if 200 <= response.status_code < 300:
            await self._record(claim, DeliveryState.DELIVERED, response.status_code, "")
            return
        retry = after_failure(self.policy, d.attempts, self.clock())
        log.warning("webhook delivery %s to %s, attempt %d: %s", d.delivery_id, claim.url,
                    d.attempts, response.error)
        await self._record(claim, retry.state, response.status_code, response.error,
                           retry.next_at)

    async def _record(self, claim: Claim, state: DeliveryState, code: int, error: str,
                      next_at: int | None = None) -> None:
        if self.on_attempt is not None:
            self.on_attempt(OUTCOME[state])
        if not await self.store.automation.record_delivery(claim, self.owner, state, code,
                                                           error, next_at):
            log.warning("webhook delivery %s: its claim expired before its outcome was "
                        "recorded; it is tried again", claim.delivery.delivery_id)

    async def close(self) -> None:
        if self._close is not None:
            await self._close()


