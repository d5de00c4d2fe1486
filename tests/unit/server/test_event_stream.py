"""`EventStream` under a real uvicorn on loopback: writes from the request's task, stops when
the client leaves, and ends cleanly when the body does."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kaiwa.server.request_id import RequestIdMiddleware
from kaiwa.server.sse import DetachedBodies, EventStream


class Probe:
    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.handler_went_on = asyncio.Event()
        self.released = 0
        self.inner_returned = False
        self.inner_returned_first: bool | None = None
        self.scope: Scope = {}
        self.stack_kept: bool | None = None
        self.app_kept: bool | None = None

    async def release(self) -> None:
        await asyncio.sleep(0.05)  # a slot kept in Redis takes a round trip
        self.released += 1

    async def body(
        self, frames: int, then_wait: bool, note_inner: bool = False
    ) -> AsyncGenerator[bytes, None]:
        try:
            if note_inner:
                self.inner_returned_first = self.inner_returned
                self.stack_kept = "inner_stack" in self.scope
                self.app_kept = "app" in self.scope
            for n in range(frames):
                yield f"data: {n}\n\n".encode()
            if then_wait:
                await asyncio.sleep(60)
        finally:
            self.closed.set()


def _app(probe: Probe) -> Starlette:
    async def endless(request: Request) -> EventStream:
        return EventStream(probe.body(1, then_wait=True), headers={}, release=probe.release)

    async def short(request: Request) -> EventStream:
        body = probe.body(3, then_wait=False)
        return EventStream(body, headers={"X-Test": "yes"}, release=probe.release)

    class After:
        """Goes on after the response, on the same task: a stray cancel would land there."""

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await EventStream(probe.body(1, then_wait=False), headers={})(scope, receive, send)
            await asyncio.sleep(0.05)
            probe.handler_went_on.set()

    return Starlette(
        routes=[Route("/endless", endless), Route("/short", short), Route("/after", After())]
    )


class Inner:
    """A layer inside the app: notes when it has returned."""

    def __init__(self, app: ASGIApp, probe: Probe) -> None:
        self.app = app
        self.probe = probe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with AsyncExitStack() as stack:
            scope["inner_stack"] = stack
            self.probe.scope = scope
            await self.app(scope, receive, send)
        self.probe.inner_returned = True


def _detaching_app(probe: Probe) -> ASGIApp:
    """An app whose outermost layer writes stream bodies, as kaiwa's."""

    async def endless(request: Request) -> EventStream:
        return EventStream(probe.body(1, then_wait=True), headers={}, release=probe.release)

    async def short(request: Request) -> EventStream:
        body = probe.body(3, then_wait=False, note_inner=True)
        return EventStream(body, headers={"X-Test": "yes"}, release=probe.release)

    app = Starlette(
        routes=[Route("/endless", endless), Route("/short", short)],
        middleware=[Middleware(RequestIdMiddleware), Middleware(Inner, probe=probe)],
    )
    return DetachedBodies(app)


@asynccontextmanager
async def serving(probe: Probe, app: ASGIApp | None = None) -> AsyncIterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = app or _app(probe)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_client_leaving_closes_the_body_at_once() -> None:
    probe = Probe()
    async with serving(probe) as base, httpx.AsyncClient(base_url=base) as client:
        async with client.stream("GET", "/endless") as response:
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            first = await anext(response.aiter_raw())
            assert first == b"data: 0\n\n"
        # The connection is closed here; the server notices and closes the body.
        async with asyncio.timeout(5):
            await probe.closed.wait()
            while not probe.released:  # noqa: ASYNC110 (released right after the body closes)
                await asyncio.sleep(0.01)
    assert probe.released == 1


async def test_a_body_that_ends_ends_the_response_with_its_frames_and_headers() -> None:
    probe = Probe()
    async with serving(probe) as base, httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/short")
        # Released before the end of the response went out: a client may ask again at once.
        assert probe.released == 1
        # The same connection serves the next request: the response ended properly.
        again = await client.get("/short")
    assert response.status_code == 200
    assert response.headers["x-test"] == "yes"
    assert response.content == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert again.content == response.content
    assert probe.closed.is_set()
    assert probe.released == 2  # once per response


async def test_no_cancel_is_left_pending_on_the_task_after_a_normal_end() -> None:
    probe = Probe()
    async with serving(probe) as base, httpx.AsyncClient(base_url=base) as client:
        async with client.stream("GET", "/after") as response:
            assert await response.aread() == b"data: 0\n\n"
        async with asyncio.timeout(5):
            await probe.handler_went_on.wait()


async def test_a_detached_body_is_written_once_every_layer_of_the_app_has_returned() -> None:
    probe = Probe()
    async with (
        serving(probe, _detaching_app(probe)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        response = await client.get("/short", headers={"x-request-id": "req-1"})
        assert probe.released == 1  # before the end of the response went out
        again = await client.get("/short")
    # The start went through every layer: their headers are there.
    assert response.headers["x-test"] == "yes"
    assert response.headers["x-request-id"] == "req-1"
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.content == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert again.content == response.content
    # The layer inside had returned before the body was read, and the scope (uvicorn keeps it
    # for as long as the request) no longer held what the layers put there: a spent exit
    # stack, the app.
    assert probe.inner_returned_first is True
    assert probe.stack_kept is False
    assert probe.app_kept is False
    assert probe.released == 2


async def test_a_client_leaving_a_detached_stream_closes_its_body_at_once() -> None:
    probe = Probe()
    async with (
        serving(probe, _detaching_app(probe)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        async with client.stream("GET", "/endless") as response:
            first = await anext(response.aiter_raw())
            assert first == b"data: 0\n\n"
            assert probe.inner_returned
        async with asyncio.timeout(5):
            await probe.closed.wait()
            while not probe.released:  # noqa: ASYNC110 (released right after the body closes)
                await asyncio.sleep(0.01)
    assert probe.released == 1
