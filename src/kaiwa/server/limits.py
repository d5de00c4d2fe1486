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


# Multipart form overhead allowed on top of an upload's own limit.
_MULTIPART_SLACK = 64 * 1024


def is_upload_path(path: str) -> bool:
    """Routes that take a file: the chat upload and knowledge-base documents."""
    return path.endswith("/chats/upload-file") or (
        path.startswith("/api/v1/knowledge-bases/") and path.endswith("/documents")
    )


class BodyLimitMiddleware:
    """Answers 413/10011 when a body is over its limit, by header or by what actually arrives.

    Bodies are limited to `max_bytes`, but for upload routes, which get `max_upload_bytes` (plus
    room for the multipart framing) and answer 400/10006, as Codeer does for a file too large;
    each route still checks the file's own size.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes + _MULTIPART_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes if is_upload_path(scope["path"]) else self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._reject(scope, receive, send, limit)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._reject(scope, receive, send, limit)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        if is_upload_path(scope["path"]):
            status, code = 400, ErrorCode.BAD_REQUEST
            message = (
                f"file: must be at most {limit - _MULTIPART_SLACK} bytes (max_upload_bytes); "
                f"the request is over {limit} bytes"
            )
        else:
            status, code = 413, ErrorCode.PAYLOAD_TOO_LARGE
            message = f"Request body is over the limit of {limit} bytes"
        response = error_response(status, int(code), message)
        await response(scope, receive, send)
