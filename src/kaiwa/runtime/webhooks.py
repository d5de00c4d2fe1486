"""Batch webhooks: one signed POST per ended batch, retried with backoff, never to a private
address unless the operator allowed it.

    sender = WebhookSender(allow_private="", timeout=10.0, attempts=5, backoff=2.0)
    delivery = await sender.deliver(url, event="completed", batch=batch_json, secret="s3cret")
    delivery.attempts, delivery.error          # error None: delivered (a 2xx answer)
    await sender.aclose()

In the server each delivery is a `webhook` job (`Webhooks`): one attempt per run of the job, so
the retries survive a restart and any replica may make the next one; the attempts and their
backoff are `batch_webhook_attempts` and `batch_webhook_backoff`.

The request: `POST url`, `Content-Type: application/json`, body
`{"event": "completed", "batch": {...}, "timestamp": "2026-01-01T00:00:00.000000Z"}` and headers

- `X-Codeer-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`, when the webhook has a secret
  (the header name is `KAIWA_BATCH_WEBHOOK_SIGNATURE_HEADER`);
- `X-Kaiwa-Timestamp`: the body's `timestamp` as Unix seconds, so a receiver can refuse a stale
  request before parsing it (the signed value is the one in the body);
- `X-Kaiwa-Event`, and `X-Kaiwa-Delivery: <batch id>:<event>`, the same on every retry, for a
  receiver to recognise one it has already handled (delivery is at least once).

To verify: compute the HMAC over the raw bytes received (before parsing), compare it with the
header in constant time (`hmac.compare_digest`), then check that `timestamp` is recent.

Deliberate choices: each attempt gets a fresh `timestamp` (and so a fresh signature), so that a
receiver can keep its freshness window tight. Redirects are not followed. Network errors,
timeouts, 408, 429 and 5xx are retried; any other answer is final. Connections go through
`GuardedTransport` with the `KAIWA_FETCH_ALLOW_PRIVATE` policy, so a webhook cannot reach the
server's own network by a name that resolves there.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import kaiwa
from kaiwa.net.addresses import AddressPolicy, BlockedAddress
from kaiwa.net.redact import shown_url
from kaiwa.net.transport import GuardedTransport
from kaiwa.runtime.jobs import Retry
from kaiwa.store import batches
from kaiwa.store.db import transaction
from kaiwa.store.models import Batch, Job

__all__ = ["Delivery", "WebhookSender", "Webhooks", "sign", "webhook_body"]

logger = logging.getLogger(__name__)

USER_AGENT = f"kaiwa/{kaiwa.__version__} (+batch-webhook)"
_RETRIED = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Delivery:
    attempts: int
    error: str | None
    """Why it was given up; None when a 2xx answer came."""


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, body)>`.

    >>> sign("s3cret", b"{}")
    'sha256=adbde1ce40c89c14215687d5d762a47df6dfaefcfad61e2e86718ffc8498571b'
    """
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_body(event: str, batch: Mapping[str, Any], at: datetime) -> bytes:
    """The exact bytes sent (and signed): compact JSON, UTF-8."""
    payload = {"event": event, "batch": dict(batch), "timestamp": _iso(at)}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class WebhookSender:
    """Delivers batch webhooks; one shared connection pool, closed by `aclose`."""

    def __init__(
        self,
        *,
        allow_private: str,
        timeout: float,
        attempts: int,
        backoff: float,
        signature_header: str = "X-Codeer-Signature",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._attempts = attempts
        self._backoff = backoff
        self._signature_header = signature_header
        self._client = httpx.AsyncClient(
            transport=transport or GuardedTransport(AddressPolicy.parse(allow_private)),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
        )

    async def deliver(
        self, url: str, *, event: str, batch: Mapping[str, Any], secret: str | None
    ) -> Delivery:
        """POST until a 2xx answer, a final failure, or the attempts run out."""
        error = "not sent"
        for attempt in range(1, self._attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 2))
            error, retry = await self.send(url, event=event, batch=batch, secret=secret)
            if not error:
                return Delivery(attempts=attempt, error=None)
            if not retry:
                return Delivery(attempts=attempt, error=error)
        return Delivery(attempts=self._attempts, error=error)

    async def send(
        self, url: str, *, event: str, batch: Mapping[str, Any], secret: str | None
    ) -> tuple[str, bool]:
        """One attempt: `("", _)` when delivered, else (why not, whether to try again)."""
        return await self._send(url, event, batch, secret)

    async def _send(
        self, url: str, event: str, batch: Mapping[str, Any], secret: str | None
    ) -> tuple[str, bool]:
        """("", _) when delivered, else (why not, whether to try again)."""
        at = datetime.now(UTC)
        body = webhook_body(event, batch, at)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "x-kaiwa-event": event,
            "x-kaiwa-delivery": f"{batch.get('id')}:{event}",
            "x-kaiwa-timestamp": str(int(at.timestamp())),
        }
        if secret:
            headers[self._signature_header] = sign(secret, body)
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except BlockedAddress as exc:
            return f"Refused: {exc.message}", False
        except httpx.TimeoutException:
            return "Timed out", True
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}".rstrip(": "), True
        if response.is_success:
            return "", False
        status = response.status_code
        return f"HTTP {status}", status in _RETRIED or status >= 500

    async def aclose(self) -> None:
        await self._client.aclose()


class Webhooks:
    """The `webhook` job: delivers an ended batch's webhook, one attempt per run."""

    kind = batches.WEBHOOK_JOB
    concurrency = 4

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        sender: WebhookSender,
        *,
        attempts: int,
        backoff: float,
        batch_object: Callable[[Batch], Mapping[str, Any]],
    ) -> None:
        self._sessions = sessions
        self._sender = sender
        self.max_attempts = attempts
        self.backoff = backoff
        self._batch_object = batch_object

    async def run(self, job: Job) -> None:
        batch_id = str(job.payload["batch_id"])
        async with self._sessions() as session:
            batch = await session.get(Batch, batch_id)
        if batch is None or batch.webhook_url is None or batch.webhook_delivered_at is not None:
            return
        event = batches.webhook_event(batch)
        if event is None:
            return
        error, again = await self._sender.send(
            batch.webhook_url,
            event=event,
            batch=self._batch_object(batch),
            secret=batch.webhook_secret,
        )
        if error and again and job.attempts < self.max_attempts:
            await self._record(batch_id, job.attempts)
            raise Retry(error)
        await self._record(batch_id, job.attempts, delivered=not error, error=error or None)
        if error:
            logger.warning(
                "webhook of batch %s to %s not delivered: %s",
                batch_id,
                shown_url(batch.webhook_url),
                error,
            )

    async def give_up(self, job: Job, error: str) -> None:
        """Its replica died on the last attempt: recorded as not delivered."""
        await self._record(str(job.payload["batch_id"]), job.attempts, error=error)

    async def _record(
        self, batch_id: str, attempts: int, *, delivered: bool = False, error: str | None = None
    ) -> None:
        async with transaction(self._sessions) as session:
            await batches.record_webhook(
                session, batch_id, attempts=attempts, delivered=delivered, error=error
            )
