"""Every error the client raises, in one tree.

    KaiwaError                       anything the client raises on purpose
    ├── APIError                     the server answered with an error: .status, .code, .message
    │   ├── BadRequestError          400 · 10006  validation (the message names the field)
    │   ├── PermissionDeniedError    401/403 · 10001  bad key, or a chat key on management
    │   │   └── ClientUserNotAllowedError   403 · 14103  external_user_id not on the whitelist
    │   ├── NotFoundError            404 · 10003
    │   ├── ConflictError            409 · 10004  a response already runs on the chat
    │   ├── PayloadTooLargeError     413 · 10011
    │   ├── RateLimitedError         429 · 10007  .retry_after (seconds, from `Retry-After`)
    │   ├── UpstreamError            502 · 10009  the model provider failed
    │   ├── ServerError              500 · 10005, and any other 5xx
    │   └── StreamError              `response.error` inside a stream: .status is None, .event
    │       ├── StreamServerError          10005   (also a ServerError)
    │       ├── StreamUpstreamError        10009   (also an UpstreamError)
    │       └── StreamPayloadTooLargeError 10011   (also a PayloadTooLargeError)
    └── APIConnectionError           no answer: transport failure, or resume attempts used up
        └── APITimeoutError          the 90 s read timeout (or another httpx timeout) expired

Catch a family to handle it wherever it happens::

    try:
        text = client.messages.send(chat.id, message="…", agent_id=AGENT)
    except RateLimitedError as exc:
        time.sleep(exc.retry_after or 1)
    except UpstreamError:          # a 502 before the stream, or code 10009 inside it
        ...

An in-stream error is raised by the stream's iterator once every event before it was delivered;
its family follows the code, and codes that only exist in streams (10008 idle timeout, 10010
interrupted) raise a plain `StreamError`.

Deliberate oddity: the three `Stream*Error` classes inherit from two parents, so that
`except UpstreamError` catches an upstream failure before and after the stream started.
"""

from __future__ import annotations

from kaiwa.protocol import ErrorCode, ResponseError
from kaiwa.protocol.errors import FieldError


class KaiwaError(Exception):
    """The root: `except KaiwaError` catches every failure of a call."""


class APIError(KaiwaError):
    """The server answered with an error envelope (or, for a `StreamError`, an error event)."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        status: int | None,
        errors: tuple[FieldError, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        """The envelope's `error_code` (see `kaiwa.protocol.ErrorCode`)."""
        self.status = status
        """The HTTP status; None for an error reported inside a stream."""
        self.errors = errors
        """[ext] Each bad field and why (`required`, `type`, `date`…), when the server lists
        them (a form's values): to show a message beside each field."""

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "in stream"
        return f"{self.message} (error_code {self.code}, {where})"


class BadRequestError(APIError):
    pass


class PermissionDeniedError(APIError):
    pass


class ClientUserNotAllowedError(PermissionDeniedError):
    pass


class NotFoundError(APIError):
    pass


class ConflictError(APIError):
    pass


class PayloadTooLargeError(APIError):
    pass


class RateLimitedError(APIError):
    def __init__(
        self, message: str, *, code: int, status: int | None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after
        """Seconds to wait before trying again, from the `Retry-After` header (None if absent)."""


class UpstreamError(APIError):
    pass


class ServerError(APIError):
    pass


class StreamError(APIError):
    """A `response.error` event: the answer failed after the stream had started."""

    def __init__(self, event: ResponseError) -> None:
        super().__init__(event.message, code=event.code, status=None)
        self.event = event
        self.response_id = event.response_id
        self.chat_id = event.chat_id


class StreamServerError(StreamError, ServerError):
    pass


class StreamUpstreamError(StreamError, UpstreamError):
    pass


class StreamPayloadTooLargeError(StreamError, PayloadTooLargeError):
    pass


class APIConnectionError(KaiwaError):
    """No usable answer: the connection failed, and for a stream every resume attempt too."""


class APITimeoutError(APIConnectionError):
    pass


#: The family of each error code, before a stream starts.
FAMILIES: dict[int, type[APIError]] = {
    ErrorCode.PERMISSION_DENIED: PermissionDeniedError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.CONFLICT: ConflictError,
    ErrorCode.SERVER_ERROR: ServerError,
    ErrorCode.BAD_REQUEST: BadRequestError,
    ErrorCode.RATE_LIMITED: RateLimitedError,
    ErrorCode.UPSTREAM_ERROR: UpstreamError,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLargeError,
    ErrorCode.CLIENT_USER_NOT_ALLOWED: ClientUserNotAllowedError,
}

#: The family of an error without a known code (a proxy's HTML page, an older server).
STATUS_FAMILIES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: PermissionDeniedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
    502: UpstreamError,
}

STREAM_FAMILIES: dict[int, type[StreamError]] = {
    ErrorCode.SERVER_ERROR: StreamServerError,
    ErrorCode.UPSTREAM_ERROR: StreamUpstreamError,
    ErrorCode.PAYLOAD_TOO_LARGE: StreamPayloadTooLargeError,
}


def error_for_status(
    status: int,
    code: int,
    message: str,
    *,
    retry_after: float | None = None,
    errors: tuple[FieldError, ...] = (),
) -> APIError:
    """The exception for an error answer: by its code, else by its HTTP status."""
    family = FAMILIES.get(code) or STATUS_FAMILIES.get(status)
    if family is None:
        family = ServerError if status >= 500 else APIError
    if family is RateLimitedError:
        return RateLimitedError(message, code=code, status=status, retry_after=retry_after)
    return family(message, code=code, status=status, errors=errors)


def error_for_event(event: ResponseError) -> StreamError:
    """The exception for a `response.error` event."""
    return STREAM_FAMILIES.get(event.code, StreamError)(event)
