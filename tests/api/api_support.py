"""Helpers for the in-process API suite: a keyed client over one app, and an SSE body parser.

`Api` wraps an `httpx.AsyncClient` on the app's ASGI transport. Its verbs send the workspace's
management key unless a test passes `key=` (a different key) or uses `api.client` directly (no key).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.protocol import Event, OutputTextCompleted, SSEDecoder, parse_event
from kaiwa.store.db import transaction
from kaiwa.store.models import Chat, Message

ENVELOPE_KEYS = {"data", "message", "error_code", "pagination"}
FIELD_ERRORS = "errors"
"""[ext] The one key an error envelope may add: the bad fields of a request, when it names them."""
DONE = b"data: [DONE]\n\n"


def envelope(response: httpx.Response) -> dict[str, Any]:
    """The JSON body, checked to be an envelope with exactly the four keys."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body, dict)
    extra = {FIELD_ERRORS} if body.get("error_code") and FIELD_ERRORS in body else set()
    assert set(body) == ENVELOPE_KEYS | extra, body
    return body


def error(response: httpx.Response, status: int, code: int) -> str:
    """Assert an error envelope with this status and code; return its message."""
    body = envelope(response)
    assert response.status_code == status, (response.status_code, body)
    assert body["error_code"] == code, body
    assert body["data"] is None
    assert body["pagination"] is None
    assert isinstance(body["message"], str)
    assert body["message"]
    message: str = body["message"]
    return message


def data(response: httpx.Response) -> Any:
    """Assert a 200 success envelope; return its data."""
    body = envelope(response)
    assert response.status_code == 200, (response.status_code, body)
    assert body["error_code"] == 0, body
    assert body["message"] is None
    return body["data"]


@dataclass
class Stream:
    """A parsed SSE body: the events, their ids, and the raw bytes."""

    raw: bytes
    ids: list[int]
    events: list[Event]

    @property
    def types(self) -> list[str]:
        return [event.type for event in self.events]

    def of(self, kind: str) -> list[Event]:
        return [event for event in self.events if event.type == kind]

    @property
    def deltas(self) -> str:
        return "".join(
            getattr(event, "delta", "") for event in self.of("response.output_text.delta")
        )

    @property
    def completed(self) -> OutputTextCompleted:
        last = self.events[-1]
        assert isinstance(last, OutputTextCompleted), self.types
        return last


def parse_stream(body: bytes) -> Stream:
    """Decode an SSE body with the protocol's own decoder; it must end with `[DONE]`.

    Every event must carry an `id:`, an `event:` equal to its payload's `type`, and ids must run
    1, 2, 3… with nothing after `[DONE]`.
    """
    assert body.endswith(DONE), body[-200:]
    decoder = SSEDecoder()
    decoded = decoder.decode(body)
    decoder.flush()
    assert decoded, body
    assert decoded[-1].data == "[DONE]"
    assert [item.data for item in decoded].count("[DONE]") == 1
    ids: list[int] = []
    events: list[Event] = []
    for item in decoded[:-1]:
        event = parse_event(item.data)
        assert item.event == event.type, (item.event, event.type)
        assert json.loads(item.data)["type"] == event.type
        assert item.id is not None
        ids.append(int(item.id))
        events.append(event)
    assert ids == list(range(1, len(ids) + 1)), ids
    return Stream(raw=body, ids=ids, events=events)


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    key: str
    """A management key of the workspace."""
    chat_key: str
    """A chat-scope key of the same workspace."""
    workspace_id: str
    demo_agent_id: str
    """The published demo agent, on `builtin/extractive`."""

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"x-api-key": key if key is not None else self.key}

    async def request(
        self,
        method: str,
        url: str,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        merged = {**self.headers(key), **(headers or {})}
        return await self.client.request(method, url, headers=merged, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)

    @asynccontextmanager
    async def store(self) -> AsyncIterator[AsyncSession]:
        """A transaction on the app's own database."""
        async with transaction(self.app.state.sessions) as session:
            yield session

    async def create_agent(self, *, publish: bool = True, **fields: Any) -> dict[str, Any]:
        fields.setdefault("name", "agent")
        agent: dict[str, Any] = data(await self.post("/api/v1/agents", json=fields))
        if publish:
            agent = data(await self.post(f"/api/v1/agents/{agent['id']}/publish"))
        return agent

    async def scripted_agent(
        self, answer: list[dict[str, Any]] | None = None, *, publish: bool = True, **script: Any
    ) -> str:
        """A `scripted/test` agent following `answer` (and `title`, `usage`…); its id."""
        if answer is not None:
            script["answer"] = answer
        agent = await self.create_agent(
            publish=publish,
            name="scripted",
            llm_model="scripted/test",
            meta={"model_settings": {"script": script}},
        )
        agent_id: str = agent["id"]
        return agent_id

    async def create_chat(
        self, agent_id: str | None = None, *, name: str = "chat", **fields: Any
    ) -> dict[str, Any]:
        body = {"name": name, "agent_id": agent_id or self.demo_agent_id, **fields}
        chat: dict[str, Any] = data(await self.post("/api/v1/chats", json=body))
        return chat

    async def send(
        self, chat_id: int, message: str, *, agent_id: str | None = None, **fields: Any
    ) -> httpx.Response:
        body = {"message": message, "agent_id": agent_id or self.demo_agent_id, **fields}
        return await self.post(f"/api/v1/chats/{chat_id}/messages", json=body)

    async def stream(
        self, chat_id: int, message: str, *, agent_id: str | None = None, **fields: Any
    ) -> Stream:
        response = await self.send(chat_id, message, agent_id=agent_id, **fields)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return parse_stream(response.content)

    async def messages(self, chat_id: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = data(
            await self.get(f"/api/v1/chats/{chat_id}/messages", params={"limit": 1000})
        )
        return rows

    async def counts(self) -> tuple[int, int]:
        """How many chats and messages the database holds, across every workspace."""
        async with self.store() as session:
            chats = await session.scalar(select(func.count()).select_from(Chat))
            messages = await session.scalar(select(func.count()).select_from(Message))
        return int(chats or 0), int(messages or 0)
