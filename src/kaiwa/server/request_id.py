"""`X-Request-ID`: every request has an id, the client's or a new one, that every log line
written for it carries and that its response returns, streams included.

    app.add_middleware(RequestIdMiddleware, metrics=HttpMetrics(metrics))  # last: outermost

The same middleware, kaiwa's outermost, counts and times the request when given `metrics` (it
sees what every other middleware answers too). The body of an SSE stream is written outside it,
once it has returned (`kaiwa.server.sse.DetachedBodies`).

An incoming id is kept when it is short printable ASCII (1-128 characters, no space): anything
else is replaced, so that a client can neither forge a log line nor bloat every one. A new id is
32 hex digits. A response that started an answer or reads one (`X-Kaiwa-Response-Id`) also binds
that response's id, so the request's access line names it.

Deliberate oddities: Starlette answers an unhandled exception (a bug: 500/10005) from a middleware
outside every added one, without this header; so this one answers that 500 itself, with the same
envelope as `errors._unexpected`, and lets the exception go on to be handled and logged. The id
is then left bound, so that those log lines carry it too (the task ends with the request).
"""

from __future__ import annotations

import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaiwa import log_context
from kaiwa.protocol import ErrorCode
from kaiwa.server.errors import error_response
from kaiwa.server.metrics_http import HttpMetrics, request_started

__all__ = ["HEADER", "RequestIdMiddleware", "incoming_request_id"]

HEADER = "X-Request-ID"
_HEADER = HEADER.lower().encode()
_RESPONSE_ID = b"x-kaiwa-response-id"
_VALID = re.compile(rb"[\x21-\x7e]{1,128}")


def incoming_request_id(value: bytes | None) -> str | None:
    """The client's id when it is acceptable, else None."""
    if value is None or not _VALID.fullmatch(value):
        return None
    return value.decode("ascii")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        arrived = time.perf_counter()
        given = next((value for name, value in scope["headers"] if name == _HEADER), None)
        request_id = incoming_request_id(given) or uuid.uuid4().hex
        token = log_context.bind(request_id=request_id)
        timing = request_started.set(arrived) if metrics is not None else None
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if not started and message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", ()), (_HEADER, request_id.encode())]
                for name, value in headers:
                    if name.lower() == _RESPONSE_ID:
                        log_context.bind(response_id=value.decode("latin-1"))
                message = {**message, "headers": headers}
                if metrics is not None:
                    metrics.record(scope, message["status"], arrived)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not started:
                response = error_response(500, int(ErrorCode.SERVER_ERROR), "Internal server error")
                await response(scope, receive, send_with_id)
            raise
        finally:
            if timing is not None:
                request_started.reset(timing)
        log_context.reset(token)
