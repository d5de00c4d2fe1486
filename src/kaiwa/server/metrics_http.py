"""HTTP metrics: requests by route template, method and status, and how long each took to
answer. Recorded by the outermost middleware, which also sets `request_started`:

    app.add_middleware(RequestIdMiddleware, metrics=HttpMetrics(metrics))

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

from starlette.types import Scope

from kaiwa.server.metrics import Metrics

__all__ = ["UNMATCHED", "HttpMetrics", "request_started"]

UNMATCHED = "unmatched"
"""The route label of a request no route matched."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

request_started: ContextVar[float | None] = ContextVar("kaiwa_request_started", default=None)
"""`time.perf_counter()` at the arrival of the request being handled, if any."""


class HttpMetrics:
    """Counts and times requests; the outermost middleware (`RequestIdMiddleware`) calls it.

    One middleware does both, so that each request goes through one frame and one `send`
    wrapper of kaiwa's, and an open stream keeps only those.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._requests = metrics.http_requests
        self._duration = metrics.http_duration

    def record(self, scope: Scope, status: int, started: float) -> None:
        """A response's status line, `started` being `time.perf_counter()` at its arrival."""
        route = scope.get("route")
        template = getattr(route, "path_format", None) or UNMATCHED
        method = scope["method"] if scope["method"] in _METHODS else "other"
        self._requests.labels(template, method, str(status)).inc()
        self._duration.labels(template, method).observe(time.perf_counter() - started)
