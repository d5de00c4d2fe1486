"""`Stream` and `AsyncStream`: one response's events, typed, resumed across dropped connections.

    with client.messages.stream(chat.id, message="営業時間は?", agent_id=AGENT) as stream:
        for event in stream:                       # kaiwa.protocol events, each exactly once
            if isinstance(event, OutputTextDelta):
                print(event.delta, end="", flush=True)
        text = stream.final_text()

    async with client.messages.stream(chat.id, message="…", agent_id=AGENT) as stream:
        async for event in stream:
            ...
        text = await stream.final_text()

The request goes out when the `with` block is entered, so errors found before the stream starts
(404, 409, 429, …) raise there. When the connection drops mid-answer, the stream reconnects to
the response's events endpoint with the last event id (see `ResumePolicy`) and carries on; the
caller only ever sees a gap as a pause. A `response.error` event raises its `StreamError` from
the iterator after every event before it was delivered. `stream.cancel()` stops the answer; the
stream then ends with `completed` (status `cancelled`) as usual. An answer that asks for a form
ends `awaiting_form`, and `stream.form_request()` gives the form.

The bookkeeping (decode, deduplicate, fold, when to reconnect) is `_base.StreamCursor`; what is
here is the I/O loop, twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Self

import httpx

from kaiwa.client._base import StreamCursor, connection_error
from kaiwa.client._calls import cancel_response
from kaiwa.client._exceptions import APIError, KaiwaError
from kaiwa.client._models import FormRequest, ResponseStatus
from kaiwa.protocol import Event, ResponseState

if TYPE_CHECKING:
    from kaiwa.client._client import AsyncClient, Client

_NOT_OPEN = "Enter the stream first: `with client.messages.stream(...) as stream:`"
_NOT_OPEN_ASYNC = "Enter the stream first: `async with client.messages.stream(...) as stream:`"


class _StreamView:
    """What both streams show of their cursor."""

    _cursor: StreamCursor

    @property
    def chat_id(self) -> int:
        return self._cursor.chat_id

    @property
    def response_id(self) -> str | None:
        """Known once the stream is open (from `X-Kaiwa-Response-Id`, else the first event)."""
        return self._cursor.response_id

    @property
    def last_event_id(self) -> int | None:
        """The id of the last event delivered: 1, 2, 3… within the response."""
        return self._cursor.last_event_id

    @property
    def state(self) -> ResponseState:
        """Everything the events said so far: text, steps, usage, title, status, error."""
        return self._cursor.state

    def form_request(self) -> FormRequest | None:
        """The form the answer ended waiting for (`status` `awaiting_form`), else None.

        Answer it with `client.forms.submit(stream.chat_id, form.id, values)` or `.stream(...)`.
        """
        return FormRequest.from_state(self._cursor.state)

    @staticmethod
    def _check_fresh(iterator: object) -> None:
        # Entering again would send the message again.
        if iterator is not None:
            raise RuntimeError("A stream can be entered only once")

    def _require_response_id(self) -> str:
        if self._cursor.response_id is None:
            raise KaiwaError("The stream has no response yet: enter it before cancelling")
        return self._cursor.response_id


class Stream(_StreamView):
    """A response's events for `Client`: a context manager and an iterator of typed events."""

    def __init__(self, client: Client, request: httpx.Request, cursor: StreamCursor) -> None:
        self._client = client
        self._request = request
        self._cursor = cursor
        self._response: httpx.Response | None = None
        self._iterator: Generator[Event, None, None] | None = None

    def __enter__(self) -> Self:
        self._check_fresh(self._iterator)
        try:
            response = self._client._open(self._request)
        except httpx.TransportError as exc:
            raise connection_error(exc, "Could not open the stream") from exc
        self._cursor.opened(response)
        self._response = response
        self._iterator = self._iterate(response)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Event:
        if self._iterator is None:
            raise RuntimeError(_NOT_OPEN)
        return next(self._iterator)

    def final_text(self) -> str:
        """The answer's text, once the stream has ended (reads what is left of it first).

        Raises the stream's `StreamError` if the answer failed; a cancelled answer's text is
        the part written before the stop.
        """
        for _ in self:
            pass
        if self._cursor.error is not None:
            raise self._cursor.error
        return self._cursor.state.text

    def cancel(self) -> ResponseStatus:
        """Stop the answer (`POST …/cancel`); keep iterating to read its end."""
        call = cancel_response(self.chat_id, self._require_response_id())
        return self._client._call(call)

    def close(self) -> None:
        """Drop the connection; the answer goes on on the server unless it was cancelled."""
        if self._iterator is not None:
            self._iterator.close()
        if self._response is not None:
            self._response.close()

    def _iterate(self, response: httpx.Response | None) -> Generator[Event, None, None]:
        cursor = self._cursor
        while response is not None:
            self._response = response
            failure: Exception | None = None
            try:
                for chunk in response.iter_bytes():
                    yield from cursor.feed(chunk)
            except httpx.TransportError as exc:
                failure = exc
            finally:
                response.close()
            response = self._reconnect(failure)
        if cursor.error is not None:
            raise cursor.error

    def _reconnect(self, failure: Exception | None) -> httpx.Response | None:
        while (delay := self._cursor.ended(failure)) is not None:
            time.sleep(delay)
            try:
                response = self._client._open(self._client.resume_request(self._cursor))
            except (httpx.TransportError, APIError) as exc:
                failure = exc
                continue
            self._cursor.opened(response)
            return response
        return None


class AsyncStream(_StreamView):
    """`Stream` for `AsyncClient`: `async with`, `async for`, and awaited methods."""

    def __init__(self, client: AsyncClient, request: httpx.Request, cursor: StreamCursor) -> None:
        self._client = client
        self._request = request
        self._cursor = cursor
        self._response: httpx.Response | None = None
        self._iterator: AsyncGenerator[Event, None] | None = None

    async def __aenter__(self) -> Self:
        self._check_fresh(self._iterator)
        try:
            response = await self._client._open(self._request)
        except httpx.TransportError as exc:
            raise connection_error(exc, "Could not open the stream") from exc
        self._cursor.opened(response)
        self._response = response
        self._iterator = self._iterate(response)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if self._iterator is None:
            raise RuntimeError(_NOT_OPEN_ASYNC)
        return await anext(self._iterator)

    async def final_text(self) -> str:
        """The answer's text, once the stream has ended (see `Stream.final_text`)."""
        async for _ in self:
            pass
        if self._cursor.error is not None:
            raise self._cursor.error
        return self._cursor.state.text

    async def cancel(self) -> ResponseStatus:
        """Stop the answer (`POST …/cancel`); keep iterating to read its end."""
        call = cancel_response(self.chat_id, self._require_response_id())
        return await self._client._call(call)

    async def close(self) -> None:
        """Drop the connection; the answer goes on on the server unless it was cancelled."""
        if self._iterator is not None:
            await self._iterator.aclose()
        if self._response is not None:
            await self._response.aclose()

    async def _iterate(self, response: httpx.Response | None) -> AsyncGenerator[Event, None]:
        cursor = self._cursor
        while response is not None:
            self._response = response
            failure: Exception | None = None
            try:
                async for chunk in response.aiter_bytes():
                    for event in cursor.feed(chunk):
                        yield event
            except httpx.TransportError as exc:
                failure = exc
            finally:
                await response.aclose()
            response = await self._reconnect(failure)
        if cursor.error is not None:
            raise cursor.error

    async def _reconnect(self, failure: Exception | None) -> httpx.Response | None:
        while (delay := self._cursor.ended(failure)) is not None:
            await asyncio.sleep(delay)
            try:
                response = await self._client._open(self._client.resume_request(self._cursor))
            except (httpx.TransportError, APIError) as exc:
                failure = exc
                continue
            self._cursor.opened(response)
            return response
        return None
