"""Error answers become one exception per code family; transport failures become
`APIConnectionError`; `Retry-After` becomes `retry_after`. Both clients, same table.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from tests.unit.client.client_support import (
    AGENT_ID,
    CHAT_ID,
    FakeApi,
    close,
    error,
    failure,
    make_client,
    resolve,
)

from kaiwa.client import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BadRequestError,
    Client,
    ClientUserNotAllowedError,
    ConflictError,
    KaiwaError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    StreamError,
    UpstreamError,
)
from kaiwa.client._base import parse_retry_after
from kaiwa.client._exceptions import error_for_event

SEND = f"/chats/{CHAT_ID}/messages"


@pytest.mark.parametrize(
    ("status", "code", "family"),
    [
        (401, 10001, PermissionDeniedError),
        (403, 10001, PermissionDeniedError),
        (404, 10003, NotFoundError),
        (409, 10004, ConflictError),
        (413, 10011, PayloadTooLargeError),
        (429, 10007, RateLimitedError),
        (400, 10006, BadRequestError),
        (500, 10005, ServerError),
        (502, 10009, UpstreamError),
        (403, 14103, ClientUserNotAllowedError),
        (503, 10005, ServerError),
    ],
)
async def test_each_error_code_raises_its_family(
    kind: str, status: int, code: int, family: type[APIError]
) -> None:
    api = FakeApi().on("POST", SEND, error(status, code, "the server's own words"))
    client = make_client(kind, api)

    with pytest.raises(family) as caught:
        await resolve(client.messages.send(CHAT_ID, "hi", agent_id=AGENT_ID))
    await close(client)

    assert type(caught.value) is family
    assert caught.value.status == status
    assert caught.value.code == code
    assert caught.value.message == "the server's own words"
    assert "the server's own words" in str(caught.value)


def test_a_whitelist_refusal_is_a_permission_error_too() -> None:
    assert issubclass(ClientUserNotAllowedError, PermissionDeniedError)


@pytest.mark.parametrize(
    ("status", "text", "family"),
    [
        (502, "<html>Bad Gateway</html>", UpstreamError),
        (503, "unavailable", ServerError),
        (504, "", ServerError),
        (404, "not here", NotFoundError),
        (418, "teapot", APIError),
    ],
)
async def test_an_answer_without_an_envelope_raises_by_its_status(
    kind: str, status: int, text: str, family: type[APIError]
) -> None:
    response = httpx.Response(status, text=text)
    api = FakeApi().on("GET", "/chats/published-agents", response)
    client = make_client(kind, api)

    with pytest.raises(family) as caught:
        await resolve(client.chats.published_agents())
    await close(client)

    assert type(caught.value) is family
    assert caught.value.status == status
    assert caught.value.message == response.reason_phrase


async def test_rate_limited_carries_retry_after_from_the_header(kind: str) -> None:
    limited = error(429, 10007, "Too many requests: 60 per minute", **{"Retry-After": "12"})
    api = FakeApi().on("POST", "/chats", limited)
    client = make_client(kind, api)

    with pytest.raises(RateLimitedError) as caught:
        await resolve(client.chats.create(name="x", agent_id=AGENT_ID))
    await close(client)

    assert caught.value.retry_after == 12.0


async def test_rate_limited_without_the_header_has_no_retry_after(kind: str) -> None:
    api = FakeApi().on("POST", "/chats", error(429, 10007, "slow down"))
    client = make_client(kind, api)
    with pytest.raises(RateLimitedError) as caught:
        await resolve(client.chats.create(name="x", agent_id=AGENT_ID))
    await close(client)
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


@pytest.mark.parametrize(
    ("reply", "family"),
    [
        (httpx.ConnectError("connection refused"), APIConnectionError),
        (httpx.RemoteProtocolError("server disconnected"), APIConnectionError),
        (httpx.ReadTimeout("timed out"), APITimeoutError),
        (httpx.ConnectTimeout("timed out"), APITimeoutError),
    ],
)
async def test_a_transport_failure_raises_a_connection_error(
    kind: str, reply: Exception, family: type[APIConnectionError]
) -> None:
    api = FakeApi().on("GET", f"/chats/{CHAT_ID}/messages", reply)
    client = make_client(kind, api)

    with pytest.raises(family) as caught:
        await resolve(client.messages.list(CHAT_ID))
    await close(client)

    assert type(caught.value) is family
    assert isinstance(caught.value.__cause__, type(reply))
    assert len(api.requests) == 1, "a plain call is never retried"


async def test_an_answer_that_is_not_a_model_raises_a_kaiwa_error(kind: str) -> None:
    api = FakeApi().on("POST", "/chats", httpx.Response(200, json={"data": {"id": "x"}}))
    client = make_client(kind, api)
    with pytest.raises(KaiwaError, match="Unexpected answer"):
        await resolve(client.chats.create(name="x", agent_id=AGENT_ID))
    await close(client)


def test_a_missing_key_is_refused_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIWA_API_KEY", raising=False)
    with pytest.raises(KaiwaError, match="KAIWA_API_KEY"):
        Client(base_url="http://kaiwa.test")


@pytest.mark.parametrize(
    ("code", "family"),
    [
        (10009, UpstreamError),
        (10005, ServerError),
        (10011, PayloadTooLargeError),
    ],
)
def test_an_error_event_raises_its_family_and_stream_error(
    code: int, family: type[APIError]
) -> None:
    exc = error_for_event(failure(code, "broke"))
    assert isinstance(exc, StreamError)
    assert isinstance(exc, family)
    assert exc.status is None
    assert exc.code == code
    assert exc.event.message == "broke"
    assert "in stream" in str(exc)


@pytest.mark.parametrize("code", [10008, 10010, 12345])
def test_an_error_event_with_a_stream_only_code_is_a_plain_stream_error(code: int) -> None:
    exc = error_for_event(failure(code, "stopped"))
    assert type(exc) is StreamError
    assert not isinstance(exc, UpstreamError | ServerError)
