"""`ApiError` and the error codes: each code's HTTP status, and what the exception carries."""

from __future__ import annotations

import pytest

from kaiwa.protocol.errors import HTTP_STATUS, ApiError, ErrorCode


@pytest.mark.parametrize(
    ("code", "value", "status"),
    [
        (ErrorCode.PERMISSION_DENIED, 10001, 401),
        (ErrorCode.NOT_FOUND, 10003, 404),
        (ErrorCode.CONFLICT, 10004, 409),
        (ErrorCode.SERVER_ERROR, 10005, 500),
        (ErrorCode.BAD_REQUEST, 10006, 400),
        (ErrorCode.RATE_LIMITED, 10007, 429),
        (ErrorCode.TIMEOUT, 10008, 504),
        (ErrorCode.UPSTREAM_ERROR, 10009, 502),
        (ErrorCode.CANCELLED, 10010, 409),
        (ErrorCode.PAYLOAD_TOO_LARGE, 10011, 413),
        (ErrorCode.CLIENT_USER_NOT_ALLOWED, 14103, 403),
    ],
)
def test_code_value_and_default_status(code: ErrorCode, value: int, status: int) -> None:
    assert code == value
    error = ApiError(code, "message")
    assert error.status == status


def test_every_error_code_has_a_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode) - {ErrorCode.OK}


def test_api_error_carries_code_message_and_headers() -> None:
    error = ApiError(ErrorCode.RATE_LIMITED, "Too many requests", headers={"Retry-After": "3"})
    assert error.code is ErrorCode.RATE_LIMITED
    assert error.message == "Too many requests"
    assert str(error) == "Too many requests"
    assert error.headers == {"Retry-After": "3"}
    assert repr(error) == "ApiError(RATE_LIMITED, 'Too many requests')"


def test_explicit_status_overrides_the_default() -> None:
    # A valid key that may not do something is 10001 with 403, not 401.
    error = ApiError(ErrorCode.PERMISSION_DENIED, "Not allowed", status=403)
    assert (error.code, error.status) == (ErrorCode.PERMISSION_DENIED, 403)


def test_headers_default_to_a_fresh_dict_per_error() -> None:
    first, second = ApiError(ErrorCode.NOT_FOUND, "a"), ApiError(ErrorCode.NOT_FOUND, "b")
    first.headers["X"] = "1"
    assert second.headers == {}
