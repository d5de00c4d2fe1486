"""Request body size limit, as pure ASGI middleware (it must not buffer streaming responses)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaiwa.protocol import ErrorCode
from kaiwa.server.errors import error_response


class BodyTooLarge(HTTPException):
    """An HTTP exception, so that the framework's body parsing re-raises it untouched."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request body is over the limit of {max_bytes} bytes")


class BodyLimitMiddleware:
    """Answers 413/10011 when a body is over `max_bytes`, by header or by what actually arrives."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            int(ErrorCode.PAYLOAD_TOO_LARGE),
            f"Request body is over the limit of {self.max_bytes} bytes",
        )
        await response(scope, receive, send)
