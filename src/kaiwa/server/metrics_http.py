"""HTTP metrics, as pure ASGI middleware: requests by route template, method and status, and
how long each took to answer.

    app.add_middleware(MetricsMiddleware, metrics=metrics)    # added last: the outermost

The route is the matched route's path template (`/api/v1/chats/{chat_id}/messages`), never the
raw path; a request no route matched is `unmatched`. The duration runs from the request's
arrival to its response's status line: for an SSE stream, its opening, not its length. A request
the client left before any response is not counted; an exception that escapes the app counts
as the 500 the server then sends.

Deliberate oddity: the request's arrival is also put in a context variable (`request_started`),
which the answer's observer reads, so that time to `response.created` and to the first token
are measured from the request, as a client sees them. The producer task, created inside the
request, inherits it.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaiwa.server.metrics import Metrics

__all__ = ["UNMATCHED", "MetricsMiddleware", "request_started"]

UNMATCHED = "unmatched"
"""The route label of a request no route matched."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

request_started: ContextVar[float | None] = ContextVar("kaiwa_request_started", default=None)
"""`time.perf_counter()` at the arrival of the request being handled, if any."""


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self._requests = metrics.http_requests
        self._duration = metrics.http_duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        async def send_and_count(message: Message) -> None:
            nonlocal answered
            if not answered and message["type"] == "http.response.start":
                answered = True
                self._record(scope, message["status"], started)
            await send(message)

        token = request_started.set(started)
        try:
            await self.app(scope, receive, send_and_count)
        except Exception:
            if not answered:
                self._record(scope, 500, started)
            raise
        finally:
            request_started.reset(token)

    def _record(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path_format", None) or UNMATCHED
        method = scope["method"] if scope["method"] in _METHODS else "other"
        self._requests.labels(template, method, str(status)).inc()
        self._duration.labels(template, method).observe(time.perf_counter() - started)
