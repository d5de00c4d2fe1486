"""The namespaces of `AsyncClient`: the awaited twins of `_resources`, name for name.

chat = await client.chats.create(name="support", agent_id=AGENT)
text = await client.messages.send(chat.id, "営業時間は?", agent_id=AGENT)
async with client.messages.stream(chat.id, "…", agent_id=AGENT) as stream:   # not awaited
    async for event in stream:
        ...
async for chat in client.chats.iter_all():
    ...
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

import httpx

from kaiwa.client import _calls as calls
from kaiwa.client._base import Call, StreamCursor
from kaiwa.client._calls import (
    AgentId,
    FormValues,
    Id,
    IfBusy,
    JsonObject,
    OnDisconnect,
    OrderBy,
)
from kaiwa.client._files import FileInput, file_part
from kaiwa.client._models import (
    Agent,
    Chat,
    FeedbackType,
    FileScope,
    Message,
    Page,
    ResponseStatus,
    UploadedFile,
)
from kaiwa.client._models import Feedback as FeedbackModel
from kaiwa.client._streaming import AsyncStream

if TYPE_CHECKING:
    from kaiwa.client._client import AsyncClient

T = TypeVar("T")

PAGE_SIZE = 100


class _Resource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def _stream(
        self, call: Call[T], chat_id: int, response_id: str | None = None, after: int | None = None
    ) -> AsyncStream:
        cursor = StreamCursor(
            chat_id=chat_id, policy=self._client.resume, response_id=response_id, after=after
        )
        return AsyncStream(self._client, self._client.build(call, stream=True), cursor)


class AsyncChats(_Resource):
    async def published_agents(self) -> builtins.list[Agent]:
        """The agents of the workspace that have a published version, as published."""
        return await self._client._call(calls.published_agents())

    async def create(
        self, *, name: str, agent_id: AgentId, external_user_id: str | None = None
    ) -> Chat:
        return await self._client._call(
            calls.create_chat(name=name, agent_id=agent_id, external_user_id=external_user_id)
        )

    async def list(
        self,
        *,
        agent_id: AgentId | None = None,
        external_user_id: str | None = None,
        order_by: OrderBy | None = None,
        limit: int = calls.DEFAULT_LIMIT,
        offset: int = 0,
    ) -> Page[Chat]:
        """One page of chats, newest first unless `order_by` says otherwise."""
        return await self._client._call(
            calls.list_chats(
                agent_id=agent_id,
                external_user_id=external_user_id,
                order_by=order_by,
                limit=limit,
                offset=offset,
            )
        )

    def iter_all(
        self,
        *,
        agent_id: AgentId | None = None,
        external_user_id: str | None = None,
        order_by: OrderBy | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[Chat]:
        """Every chat, fetching one page at a time as the iteration goes."""
        return self._client._paginate(
            lambda offset: calls.list_chats(
                agent_id=agent_id,
                external_user_id=external_user_id,
                order_by=order_by,
                limit=page_size,
                offset=offset,
            )
        )

    async def rename(self, chat_id: int, *, name: str) -> Chat:
        """Rename by hand: the chat's title is no longer generated."""
        return await self._client._call(calls.rename_chat(chat_id, name=name))


class AsyncMessages(_Resource):
    async def list(
        self, chat_id: int, *, limit: int = calls.DEFAULT_LIMIT, offset: int = 0
    ) -> Page[Message]:
        """One page of the chat's messages, oldest first."""
        return await self._client._call(calls.list_messages(chat_id, limit=limit, offset=offset))

    def iter_all(self, chat_id: int, *, page_size: int = PAGE_SIZE) -> AsyncIterator[Message]:
        """Every message of the chat, oldest first, one page at a time."""
        return self._client._paginate(
            lambda offset: calls.list_messages(chat_id, limit=page_size, offset=offset)
        )

    async def send(
        self,
        chat_id: int,
        message: str,
        *,
        agent_id: AgentId,
        external_user_id: str | None = None,
        attached_file_uuids: Sequence[str | UUID] | None = None,
        include_tool_tags: bool | None = None,
        on_disconnect: OnDisconnect | None = None,
        if_busy: IfBusy | None = None,
        timeout: float | httpx.Timeout | None = None,  # noqa: ASYNC109 (httpx's, per read)
        idempotency_key: str | None = None,
    ) -> str:
        """Send a message and wait for the whole answer (`stream: false`): its text.

        The wait is one silent read, so `timeout` may need to exceed the client's for long
        answers. A failed answer raises its error family (e.g. `UpstreamError`).
        """
        return await self._client._call(
            calls.send_message(
                chat_id,
                message=message,
                agent_id=agent_id,
                stream=False,
                external_user_id=external_user_id,
                attached_file_uuids=attached_file_uuids,
                include_tool_tags=include_tool_tags,
                on_disconnect=on_disconnect,
                if_busy=if_busy,
                timeout=timeout,
                idempotency_key=idempotency_key,
            )
        )

    def stream(
        self,
        chat_id: int,
        message: str,
        *,
        agent_id: AgentId,
        external_user_id: str | None = None,
        attached_file_uuids: Sequence[str | UUID] | None = None,
        include_tool_tags: bool | None = None,
        on_disconnect: OnDisconnect | None = None,
        if_busy: IfBusy | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncStream:
        """Send a message and stream the answer: use the result in a `with` block."""
        call = calls.send_message(
            chat_id,
            message=message,
            agent_id=agent_id,
            stream=True,
            external_user_id=external_user_id,
            attached_file_uuids=attached_file_uuids,
            include_tool_tags=include_tool_tags,
            on_disconnect=on_disconnect,
            if_busy=if_busy,
            idempotency_key=idempotency_key,
        )
        return self._stream(call, chat_id)

    async def regenerate(
        self,
        chat_id: int,
        *,
        agent_id: AgentId,
        external_user_id: str | None = None,
        include_tool_tags: bool | None = None,
        on_disconnect: OnDisconnect | None = None,
        if_busy: IfBusy | None = None,
        timeout: float | httpx.Timeout | None = None,  # noqa: ASYNC109 (httpx's, per read)
        idempotency_key: str | None = None,
    ) -> str:
        """A new answer to the chat's last user message (the previous one is kept, superseded)."""
        return await self._client._call(
            calls.regenerate(
                chat_id,
                agent_id=agent_id,
                stream=False,
                external_user_id=external_user_id,
                include_tool_tags=include_tool_tags,
                on_disconnect=on_disconnect,
                if_busy=if_busy,
                timeout=timeout,
                idempotency_key=idempotency_key,
            )
        )

    def stream_regenerate(
        self,
        chat_id: int,
        *,
        agent_id: AgentId,
        external_user_id: str | None = None,
        include_tool_tags: bool | None = None,
        on_disconnect: OnDisconnect | None = None,
        if_busy: IfBusy | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncStream:
        """`regenerate`, streamed: use the result in a `with` block."""
        call = calls.regenerate(
            chat_id,
            agent_id=agent_id,
            stream=True,
            external_user_id=external_user_id,
            include_tool_tags=include_tool_tags,
            on_disconnect=on_disconnect,
            if_busy=if_busy,
            idempotency_key=idempotency_key,
        )
        return self._stream(call, chat_id)


class AsyncForms(_Resource):
    """Answer the form a paused answer asked for (`stream.form_request()`); the turn goes on."""

    async def submit(
        self,
        chat_id: int,
        form_request_id: Id,
        values: FormValues,
        *,
        agent_id: AgentId | None = None,
        external_user_id: str | None = None,
        include_tool_tags: bool | None = None,
        on_disconnect: OnDisconnect | None = None,
        timeout: float | httpx.Timeout | None = None,  # noqa: ASYNC109 (httpx's, per read)
        idempotency_key: str | None = None,
    ) -> str:
        """Submit the values and wait for the rest of the answer: its text.

        A bad value raises `BadRequestError` whose message starts `values.<name>:`; a second
        submit raises `ConflictError`.
        """
        return await self._client._call(
            calls.submit_form(
                chat_id,
                form_request_id,
                values=values,
                stream=False,
                agent_id=agent_id,
                external_user_id=external_user_id,
                include_tool_tags=include_tool_tags,
                on_disconnect=on_disconnect,
                timeout=timeout,
                idempotency_key=idempotency_key,
            )
        )

    def stream(
        self,
        chat_id: int,
        form_request_id: Id,
        values: FormValues,
        *,
        agent_id: AgentId | None = None,
        external_user_id: str | None = None,
        include_tool_tags: bool | None = None,
        on_disconnect: OnDisconnect | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncStream:
        """`submit`, streamed (a new response of the same turn): use it in a `with` block."""
        call = calls.submit_form(
            chat_id,
            form_request_id,
            values=values,
            stream=True,
            agent_id=agent_id,
            external_user_id=external_user_id,
            include_tool_tags=include_tool_tags,
            on_disconnect=on_disconnect,
            idempotency_key=idempotency_key,
        )
        return self._stream(call, chat_id)


class AsyncFiles(_Resource):
    """Files to attach to messages (`attached_file_uuids=`)."""

    async def upload(
        self,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        scope: FileScope = "persistent",
    ) -> UploadedFile:
        """Upload bytes, a path or a binary file object; `ephemeral` files expire unless
        attached. The name and type default to the path's (see `_files`)."""
        with file_part(file, filename=filename, content_type=content_type) as part:
            return await self._client._call(calls.upload_file(part, scope=scope))

    async def download(self, file_uuid: Id) -> bytes:
        return await self._client._download(calls.download_file(file_uuid))


class AsyncFeedback(_Resource):
    async def give(
        self,
        chat_id: int,
        message_id: int,
        *,
        type: FeedbackType,
        content: str | None = None,
        external_user_id: str | None = None,
    ) -> FeedbackModel:
        """An end user's verdict on an answer; giving it again replaces it."""
        return await self._client._call(
            calls.give_feedback(
                chat_id,
                message_id,
                type=type,
                content=content,
                external_user_id=external_user_id,
            )
        )


class AsyncResponses(_Resource):
    """[ext] One response of a chat: its status, its stop, its events."""

    async def status(self, chat_id: int, response_id: str) -> ResponseStatus:
        return await self._client._call(calls.response_status(chat_id, response_id))

    async def cancel(self, chat_id: int, response_id: str) -> ResponseStatus:
        """Stop the response; idempotent (an ended one is left as it is)."""
        return await self._client._call(calls.cancel_response(chat_id, response_id))

    def stream(self, chat_id: int, response_id: str, *, after: int | None = None) -> AsyncStream:
        """Follow a response's events (replayed after `after`, then live) in a `with` block."""
        call = calls.response_events(chat_id, response_id, after=after)
        return self._stream(call, chat_id, response_id, after)


class AsyncAgents(_Resource):
    """[ext] Agents of the workspace (management keys only)."""

    async def create(
        self,
        *,
        name: str,
        description: str | None = None,
        system_prompt: str | None = None,
        llm_model: str | None = None,
        unified_tools: Sequence[JsonObject] | None = None,
        suggested_questions: Sequence[str] | None = None,
        meta: JsonObject | None = None,
    ) -> Agent:
        return await self._client._call(
            calls.create_agent(
                name=name,
                description=description,
                system_prompt=system_prompt,
                llm_model=llm_model,
                unified_tools=unified_tools,
                suggested_questions=suggested_questions,
                meta=meta,
            )
        )

    async def list(self, *, limit: int = calls.DEFAULT_LIMIT, offset: int = 0) -> Page[Agent]:
        return await self._client._call(calls.list_agents(limit=limit, offset=offset))

    def iter_all(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[Agent]:
        return self._client._paginate(
            lambda offset: calls.list_agents(limit=page_size, offset=offset)
        )

    async def get(self, agent_id: AgentId) -> Agent:
        return await self._client._call(calls.get_agent(agent_id))

    async def update(
        self,
        agent_id: AgentId,
        *,
        name: str | None = None,
        description: str | None = None,
        system_prompt: str | None = None,
        llm_model: str | None = None,
        unified_tools: Sequence[JsonObject] | None = None,
        suggested_questions: Sequence[str] | None = None,
        meta: JsonObject | None = None,
    ) -> Agent:
        """Change the fields given (the others stay); chats see it once published."""
        return await self._client._call(
            calls.update_agent(
                agent_id,
                name=name,
                description=description,
                system_prompt=system_prompt,
                llm_model=llm_model,
                unified_tools=unified_tools,
                suggested_questions=suggested_questions,
                meta=meta,
            )
        )

    async def delete(self, agent_id: AgentId) -> None:
        await self._client._call(calls.delete_agent(agent_id))

    async def publish(self, agent_id: AgentId) -> Agent:
        """Snapshot the agent as a new version: what its chats run from now on."""
        return await self._client._call(calls.publish_agent(agent_id))
