"""`X-Request-ID`: which incoming ids are kept, and a 500 from a bug carries the id too."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kaiwa import log_context
from kaiwa.server.request_id import RequestIdMiddleware, incoming_request_id


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (b"abc-123", "abc-123"),
        (b"Root=1-67891233-abcdef012345678912345678", "Root=1-67891233-abcdef012345678912345678"),
        (b"x" * 128, "x" * 128),
        (b"!~", "!~"),
        (None, None),
        (b"", None),
        (b"x" * 129, None),
        (b"two words", None),
        (b"tab\there", None),
        (b"line\nbreak", None),
        ("é".encode(), None),
        (b"\x7f", None),
    ],
)
def test_an_incoming_id_is_kept_only_when_short_printable_ascii(
    given: bytes | None, kept: str | None
) -> None:
    assert incoming_request_id(given) == kept


async def _boom(_request: Request) -> JSONResponse:
    raise RuntimeError("a bug")


async def _ids(_request: Request) -> JSONResponse:
    return JSONResponse(dict(log_context.current()))


def _app(seen: list[dict[str, object]]) -> Starlette:
    async def handler(_request: Request, _exc: Exception) -> JSONResponse:
        seen.append(dict(log_context.current()))
        return JSONResponse({"handled": True}, status_code=500)

    return Starlette(
        routes=[Route("/boom", _boom), Route("/ids", _ids)],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={Exception: handler},
    )


async def test_the_id_is_bound_for_the_request_and_returned() -> None:
    transport = httpx.ASGITransport(app=_app([]))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        given = await client.get("/ids", headers={"x-request-id": "mine-1"})
        made = await client.get("/ids")
    assert given.headers["x-request-id"] == "mine-1"
    assert given.json() == {"request_id": "mine-1"}
    assert len(made.headers["x-request-id"]) == 32
    assert made.json() == {"request_id": made.headers["x-request-id"]}
    assert log_context.current() == {}


async def test_an_unhandled_error_is_a_500_envelope_with_the_id_and_still_handled() -> None:
    seen: list[dict[str, object]] = []
    transport = httpx.ASGITransport(app=_app(seen), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom", headers={"x-request-id": "bug-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "bug-1"
    assert response.json() == {
        "data": None,
        "message": "Internal server error",
        "error_code": 10005,
        "pagination": None,
    }
    # The app's error handler ran (it logs the error) and knew the request's id.
    assert seen == [{"request_id": "bug-1"}]
