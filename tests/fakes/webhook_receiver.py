"""A fake webhook receiver on a real loopback socket, for the batch webhook tests.

    with WebhookReceiver(statuses=[500, 200]) as receiver:   # fails once, then accepts
        ... webhook={"url": receiver.url, "secret": "s3cret"} ...
        receiver.received[0].body, receiver.received[0].headers

Every POST to `/hook` is recorded (raw body, lower-case headers, the status answered); answers
take `statuses` in turn, and the last one repeats.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.fakes.web_server import LoopbackServer


@dataclass(frozen=True)
class ReceivedWebhook:
    body: bytes
    headers: dict[str, str]
    status: int
    """What the receiver answered."""


class WebhookReceiver(LoopbackServer):
    def __init__(self, statuses: Sequence[int] = (200,)) -> None:
        self._statuses = list(statuses) or [200]
        self._lock = threading.Lock()
        self._received: list[ReceivedWebhook] = []
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        super().__init__(app, name="webhook-receiver")

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    @property
    def received(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self._received)

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            status = self._statuses[min(len(self._received), len(self._statuses) - 1)]
            self._received.append(ReceivedWebhook(body, dict(request.headers), status))
        return Response(status_code=status)
