"""Error codes of the API and the one exception that carries them.

Services raise `ApiError(code, message)`; the server turns it into an envelope with the HTTP status
below, and inside a stream the same code becomes `response.error.code`. A validation error may
also name each bad field (`FieldError`), for a client to mark them all at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum


class ErrorCode(IntEnum):
    OK = 0
    PERMISSION_DENIED = 10001
    NOT_FOUND = 10003
    CONFLICT = 10004
    SERVER_ERROR = 10005
    BAD_REQUEST = 10006
    RATE_LIMITED = 10007
    TIMEOUT = 10008
    UPSTREAM_ERROR = 10009
    CANCELLED = 10010
    PAYLOAD_TOO_LARGE = 10011
    CLIENT_USER_NOT_ALLOWED = 14103


#: HTTP status of each code when it is answered before a stream starts. 10001 is 401 by default;
#: a valid key that is not allowed to do something raises it with status 403.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.PERMISSION_DENIED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.SERVER_ERROR: 500,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.UPSTREAM_ERROR: 502,
    ErrorCode.CANCELLED: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.CLIENT_USER_NOT_ALLOWED: 403,
}


@dataclass(frozen=True, slots=True)
class FieldError:
    """[ext] One bad field of a request: the envelope lists them as `errors: [{field, reason}]`.

    `reason` is a short fixed word a client can branch on (each service documents its own, e.g.
    a form's `required`, `type`, `date`, `option`, `too_long`, `unknown`); the envelope's
    `message` says the same in words.
    """

    field: str
    reason: str


class ApiError(Exception):
    """A failure with an API error code and a message a user can act on.

    >>> raise ApiError(ErrorCode.NOT_FOUND, "Chat 12 not found")
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        errors: Sequence[FieldError] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else HTTP_STATUS.get(code, 500)
        self.headers = headers or {}
        self.errors = tuple(errors)

    def __repr__(self) -> str:
        return f"ApiError({self.code.name}, {self.message!r})"
