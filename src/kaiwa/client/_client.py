"""`Client` and `AsyncClient`: the settings of `BaseClient` plus the few methods that do I/O.

    client = Client(base_url="http://127.0.0.1:8000", api_key=KEY)
    chat = client.chats.create(name="support", agent_id=AGENT)
    text = client.messages.send(chat.id, message="営業時間は?", agent_id=AGENT)

    async with AsyncClient(base_url=URL, api_key=KEY) as client:
        chat = await client.chats.create(name="support", agent_id=AGENT)

Both take `KAIWA_BASE_URL` and `KAIWA_API_KEY` from the environment when not given. Requests
that are not streams are never retried. Every send, regenerate, form submit and batch create
carries an `Idempotency-Key` (pass `idempotency_key=` to choose it): after a failure, calling
again with the same key gets the first call's answer if it was received, never a second one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType
from typing import Self, TypeVar

import httpx
from pydantic import BaseModel

from kaiwa.client._async_batches import AsyncBatches
from kaiwa.client._async_knowledge import AsyncKnowledgeBases
from kaiwa.client._async_resources import (
    AsyncAgents,
    AsyncChats,
    AsyncFeedback,
    AsyncFiles,
    AsyncForms,
    AsyncMessages,
    AsyncResponses,
)
from kaiwa.client._base import (
    DEFAULT_TIMEOUT,
    BaseClient,
    Call,
    ResumePolicy,
    connection_error,
    is_event_stream,
    stream_refused,
)
from kaiwa.client._batches import Batches
from kaiwa.client._calls import next_page
from kaiwa.client._knowledge import KnowledgeBases
from kaiwa.client._models import Page
from kaiwa.client._resources import Agents, Chats, Feedback, Files, Forms, Messages, Responses

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Client(BaseClient):
    """A kaiwa API client; close it (or use it as a context manager) when done."""

    def __init__(
        self,
        *,
        base_url: str | httpx.URL | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        resume: ResumePolicy = ResumePolicy(),  # noqa: B008 (frozen: safe to share)
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        """`transport` (e.g. `httpx.MockTransport`) or a whole `http_client` replace the
        network; a given `http_client` is not closed by `close()`."""
        super().__init__(
            base_url=base_url, api_key=api_key, timeout=timeout, resume=resume, headers=headers
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport, timeout=self.timeout)
        self.chats = Chats(self)
        self.messages = Messages(self)
        self.feedback = Feedback(self)
        self.responses = Responses(self)
        self.forms = Forms(self)
        self.files = Files(self)
        self.agents = Agents(self)
        self.knowledge_bases = KnowledgeBases(self)
        self.batches = Batches(self)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, call: Call[T]) -> T:
        try:
            response = self._http.send(self.build(call))
        except httpx.TransportError as exc:
            raise connection_error(exc, f"{call.method} {call.path} failed") from exc
        return self.result(call, response)

    def _download(self, call: Call[None]) -> bytes:
        try:
            response = self._http.send(self.build(call))
        except httpx.TransportError as exc:
            raise connection_error(exc, f"{call.method} {call.path} failed") from exc
        return self.content(response)

    def _open(self, request: httpx.Request) -> httpx.Response:
        """Send a request whose answer is an event stream; raise if it is not one."""
        response = self._http.send(request, stream=True)
        if not is_event_stream(response):
            try:
                response.read()
            finally:
                response.close()
            raise stream_refused(response)
        return response

    def _paginate(self, call_at: Callable[[int], Call[Page[M]]]) -> Iterator[M]:
        offset: int | None = 0
        while offset is not None:
            page = self._call(call_at(offset))
            yield from page.items
            offset = next_page(page)


class AsyncClient(BaseClient):
    """The async twin of `Client`: the same namespaces and methods, awaited."""

    def __init__(
        self,
        *,
        base_url: str | httpx.URL | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        resume: ResumePolicy = ResumePolicy(),  # noqa: B008 (frozen: safe to share)
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url, api_key=api_key, timeout=timeout, resume=resume, headers=headers
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(transport=transport, timeout=self.timeout)
        self.chats = AsyncChats(self)
        self.messages = AsyncMessages(self)
        self.feedback = AsyncFeedback(self)
        self.responses = AsyncResponses(self)
        self.forms = AsyncForms(self)
        self.files = AsyncFiles(self)
        self.agents = AsyncAgents(self)
        self.knowledge_bases = AsyncKnowledgeBases(self)
        self.batches = AsyncBatches(self)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, call: Call[T]) -> T:
        try:
            response = await self._http.send(self.build(call))
        except httpx.TransportError as exc:
            raise connection_error(exc, f"{call.method} {call.path} failed") from exc
        return self.result(call, response)

    async def _download(self, call: Call[None]) -> bytes:
        try:
            response = await self._http.send(self.build(call))
        except httpx.TransportError as exc:
            raise connection_error(exc, f"{call.method} {call.path} failed") from exc
        return self.content(response)

    async def _open(self, request: httpx.Request) -> httpx.Response:
        """Send a request whose answer is an event stream; raise if it is not one."""
        response = await self._http.send(request, stream=True)
        if not is_event_stream(response):
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise stream_refused(response)
        return response

    async def _paginate(self, call_at: Callable[[int], Call[Page[M]]]) -> AsyncIterator[M]:
        offset: int | None = 0
        while offset is not None:
            page = await self._call(call_at(offset))
            for item in page.items:
                yield item
            offset = next_page(page)
