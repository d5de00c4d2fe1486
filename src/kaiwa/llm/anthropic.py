"""`anthropic`: Claude through the official SDK's Messages API.

Maps a `ModelRequest` out to one streamed `messages.create` call, the raw stream events back in
as `ModelEvent`s, and every SDK, `httpx2` or decoding failure to `ModelError` at the edge.

Deliberate choices:

- Retries are the SDK's own (`max_retries`: connection errors, 408/409/429/5xx including 529
  overloaded, honouring `Retry-After`), all before the stream starts. An `error` event inside a
  started stream (how the API reports overload mid-answer) is not retried: it ends the call.
- `first_byte_timeout` runs from the call until the first content block starts, retries
  included: the API sends `message_start` at once and may then stay silent (pings aside, which
  the SDK swallows) until the model produces. After that `chunk_timeout` bounds each event.
- The API wants user and assistant turns to alternate and tool results as `tool_result` blocks
  of a user turn, so adjacent messages of one role become one message of blocks. Text blocks
  are left out when empty, since the API rejects them; `system` messages join the `system`
  parameter.
- Error messages are built here from the status code, the error type and the address, never
  from the SDK's message or the server's body: those can quote the request or the key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal

from kaiwa.config import ProviderSettings
from kaiwa.llm.base import (
    NOT_AN_OBJECT,
    ChatMessage,
    ModelError,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCall,
    Usage,
)
from kaiwa.protocol.json_limits import parse_json

try:
    import anthropic
    import httpx2
    from anthropic.types import (
        ContentBlockParam,
        MessageParam,
        RawContentBlockDeltaEvent,
        RawContentBlockStartEvent,
        RawContentBlockStopEvent,
        RawMessageDeltaEvent,
        RawMessageStartEvent,
        RawMessageStopEvent,
        RawMessageStreamEvent,
        ToolParam,
        ToolResultBlockParam,
    )
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the 'anthropic' model provider needs the anthropic SDK: pip install 'kaiwa[server]'"
    ) from exc

TITLE_MAX_TOKENS = 64
"""`max_tokens` of a title call that names none."""
SAMPLING_SETTINGS = ("temperature", "top_p", "top_k")
"""Agent model settings passed on to the API as is (a bad value is the API's to reject)."""

_STATUS_HINTS = {
    401: "API key rejected",
    403: "access denied",
    404: "unknown model or path",
    413: "request too large",
    429: "rate limited",
    529: "overloaded",
}
_TYPE_HINTS = {
    "invalid_request_error": "invalid request",
    "authentication_error": "API key rejected",
    "permission_error": "access denied",
    "not_found_error": "unknown model or path",
    "request_too_large": "request too large",
    "rate_limit_error": "rate limited",
    "api_error": "internal error",
    "overloaded_error": "overloaded",
}


class AnthropicModel:
    """A `ChatModel` over the official `anthropic` SDK; one client per instance, built lazily."""

    def __init__(self, provider: str, model: str, settings: ProviderSettings) -> None:
        self._provider = provider
        self._model = model
        self._settings = settings
        self._client: anthropic.AsyncAnthropic | None = None

    @property
    def name(self) -> str:
        return f"{self._provider}/{self._model}"

    async def aclose(self) -> None:
        """Close the pooled HTTP connections; the next `stream()` opens new ones."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        client = self._get_client()
        state = _EventState()
        events: anthropic.AsyncStream[RawMessageStreamEvent] | None = None
        streamed_text = False
        first_byte = asyncio.get_running_loop().time() + self._settings.first_byte_timeout
        try:
            try:
                async with asyncio.timeout_at(first_byte):
                    events = await self._create(client, request)
            except TimeoutError:
                raise self._first_byte_error() from None
            while (event := await self._next(events, state, first_byte, streamed_text)) is not None:
                for out in state.apply(event):
                    streamed_text = streamed_text or isinstance(out, TextDelta)
                    yield out
            for out in state.finish():
                yield out
        except _BadStream as exc:
            raise self._error(str(exc), partial=streamed_text) from None
        except (anthropic.AnthropicError, httpx2.HTTPError, ValueError) as exc:
            # ValueError: the SDK decodes each `data:` line with json.loads, unguarded.
            # `from None`: the SDK's exception quotes the server's body.
            problem = _describe(exc, client.base_url, connected=events is not None)
            raise self._error(problem, partial=streamed_text) from None
        finally:
            if events is not None:
                # Also on cancellation: closing the response drops the upstream connection.
                await events.close()

    async def _next(
        self,
        events: anthropic.AsyncStream[RawMessageStreamEvent],
        state: _EventState,
        first_byte: float,
        partial: bool,
    ) -> RawMessageStreamEvent | None:
        """The next event, or None at the end, within the deadline that applies."""
        if not state.answering:
            try:
                async with asyncio.timeout_at(first_byte):
                    return await anext(events, None)
            except TimeoutError:
                raise self._first_byte_error() from None
        limit = self._settings.chunk_timeout
        try:
            async with asyncio.timeout(limit):
                return await anext(events, None)
        except TimeoutError:
            problem = f"the answer stalled for more than chunk_timeout ({limit:g} s)"
            raise self._error(problem, partial=partial) from None

    def _get_client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            settings = self._settings
            longest = max(settings.first_byte_timeout, settings.chunk_timeout)
            try:
                # None for api_key/base_url lets the SDK read ANTHROPIC_API_KEY (or its other
                # credential sources) and ANTHROPIC_BASE_URL.
                self._client = anthropic.AsyncAnthropic(
                    api_key=settings.api_key,
                    base_url=settings.base_url,
                    max_retries=settings.max_retries,
                    timeout=anthropic.Timeout(longest, connect=settings.connect_timeout),
                )
            except (anthropic.AnthropicError, ValueError):
                raise self._no_key() from None
        client = self._client
        if client.api_key is None and client.auth_token is None and client.credentials is None:
            raise self._no_key()
        return client

    async def _create(
        self, client: anthropic.AsyncAnthropic, request: ModelRequest
    ) -> anthropic.AsyncStream[RawMessageStreamEvent]:
        system_parts = [request.system or ""]
        system_parts += [
            message.content for message in request.messages if message.role == "system"
        ]
        system = "\n\n".join(part for part in system_parts if part)
        tools: list[ToolParam] = [
            {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
            for tool in request.tools
        ]
        if request.max_tokens is not None:
            max_tokens = request.max_tokens
        elif request.purpose == "title":
            max_tokens = TITLE_MAX_TOKENS
        else:
            max_tokens = self._settings.max_tokens
        sampling = {
            key: request.settings[key] for key in SAMPLING_SETTINGS if key in request.settings
        }
        return await client.messages.create(
            model=self._model,
            max_tokens=max_tokens,
            messages=messages_out(request.messages),
            system=system or anthropic.omit,
            tools=tools or anthropic.omit,
            stream=True,
            extra_body=sampling or None,
        )

    def _error(self, problem: str, *, partial: bool = False) -> ModelError:
        return ModelError(f"anthropic provider {self._provider!r}: {problem}", partial=partial)

    def _first_byte_error(self) -> ModelError:
        limit = self._settings.first_byte_timeout
        return self._error(f"no answer within first_byte_timeout ({limit:g} s)")

    def _no_key(self) -> ModelError:
        return ModelError(
            f"provider {self._provider!r} has no API key: "
            "set ANTHROPIC_API_KEY or api_key in kaiwa.toml"
        )


def messages_out(messages: Sequence[ChatMessage]) -> list[MessageParam]:
    """kaiwa messages as Messages API turns: alternating roles, tool results in user turns.

    >>> messages_out([ChatMessage("tool", "9時", tool_call_id="t1"), ChatMessage("user", "土曜?")])
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'role': 'user', 'content': [{'type': 'tool_result', 'tool_use_id': 't1', 'content': '9時'},
                                  {'type': 'text', 'text': '土曜?'}]}]
    """
    turns: list[tuple[Literal["user", "assistant"], list[ContentBlockParam]]] = []
    for message in messages:
        if message.role == "system":
            continue  # in the `system` parameter
        role: Literal["user", "assistant"] = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    out: list[MessageParam] = []
    for role, blocks in turns:
        if role == "user":
            out.append({"role": "user", "content": blocks})
        else:
            out.append({"role": "assistant", "content": blocks})
    return out


def _blocks(message: ChatMessage) -> list[ContentBlockParam]:
    if message.role == "tool":
        result: ToolResultBlockParam = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id or "",
        }
        if message.content:
            result["content"] = message.content
        if message.is_error:
            result["is_error"] = True
        return [result]
    blocks: list[ContentBlockParam] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    if message.role == "assistant":
        blocks += [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            for call in message.tool_calls
        ]
    return blocks


def _describe(exc: Exception, url: httpx2.URL, *, connected: bool) -> str:
    # Scheme, host and path only: user info or a query string could hold a secret.
    where = f"{url.scheme}://{url.netloc.decode()}{url.path}".rstrip("/")
    if isinstance(exc, anthropic.APIStatusError):
        kind = exc.type if isinstance(exc.type, str) and exc.type.isidentifier() else None
        hint = _STATUS_HINTS.get(exc.status_code) or _TYPE_HINTS.get(kind or "", "")
        notes = [hint, f"type {kind}" if kind and kind not in _TYPE_HINTS else ""]
        detail = ", ".join(note for note in notes if note)
        detail = f" ({detail})" if detail else ""
        if exc.status_code < 400:  # an `error` event in a stream that had started fine
            return f"the model server at {where} failed mid-stream{detail}"
        return f"HTTP {exc.status_code} from the model server at {where}{detail}"
    if isinstance(exc, anthropic.APITimeoutError):
        return f"timed out talking to {where}"
    if isinstance(exc, anthropic.APIConnectionError | httpx2.HTTPError):
        if connected:
            return f"the connection to {where} broke off mid-answer"
        return f"could not connect to {where}"
    if isinstance(exc, ValueError):
        return f"malformed response from the model server at {where}"
    return f"the call to {where} failed ({type(exc).__name__})"


_USAGE_FIELDS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)
"""The API's usage counts; prompt tokens are the sum of the first three."""


@dataclass
class _PartialCall:
    id: str
    name: str
    arguments: str = ""
    initial: object = None
    """The block's `input` at `content_block_start`; used when no JSON streams after it."""


class _EventState:
    """Folds stream events into model events: text at once, a tool call when its block stops,
    usage once the message stops."""

    def __init__(self) -> None:
        self.answering = False
        """A content block has started (the first byte of the answer, for the deadlines)."""
        self._calls: dict[int, _PartialCall] = {}
        self._tokens = dict.fromkeys(_USAGE_FIELDS, 0)
        self._started = False
        self._stopped = False

    def apply(self, event: RawMessageStreamEvent) -> list[ModelEvent]:
        try:
            # The SDK builds events without validating them, so an event of the wrong shape
            # shows up here as a missing attribute or a wrong type.
            return self._apply(event)
        except (AttributeError, TypeError):
            raise _BadStream("malformed event from the model server") from None

    def _apply(self, event: RawMessageStreamEvent) -> list[ModelEvent]:
        if isinstance(event, RawMessageStartEvent):
            self._started = True
            self._count(event.message.usage)
        elif isinstance(event, RawContentBlockStartEvent):
            self.answering = True
            block = event.content_block
            if block.type == "tool_use":
                self._calls[event.index] = _PartialCall(block.id, block.name, initial=block.input)
        elif isinstance(event, RawContentBlockDeltaEvent):
            self.answering = True
            delta = event.delta
            if delta.type == "text_delta" and delta.text:
                return [TextDelta(str(delta.text))]
            if delta.type == "input_json_delta":
                call = self._calls.get(event.index)
                if call is None:
                    raise _BadStream("tool input streamed for a block that is not a tool call")
                call.arguments += str(delta.partial_json)
        elif isinstance(event, RawContentBlockStopEvent):
            call = self._calls.pop(event.index, None)
            if call is not None:
                return [_finish_call(call)]
        elif isinstance(event, RawMessageDeltaEvent):
            self._count(event.usage)
        elif isinstance(event, RawMessageStopEvent):
            self._stopped = True
        return []

    def _count(self, usage: object) -> None:
        # Cumulative counts; message_delta may repeat the input counts or leave them out.
        for name in _USAGE_FIELDS:
            value = getattr(usage, name, None)
            if value is not None:
                self._tokens[name] = int(value)

    def finish(self) -> list[ModelEvent]:
        if not self._stopped or self._calls:
            raise _BadStream("the stream ended before the message did")
        if not self._started:
            return []
        *inputs, output = (self._tokens[name] for name in _USAGE_FIELDS)
        return [Usage(prompt_tokens=sum(inputs), completion_tokens=output)]


def _finish_call(call: _PartialCall) -> ToolCall:
    if call.arguments:
        try:
            arguments = parse_json(call.arguments)
        except ValueError:
            arguments = None
    else:
        arguments = call.initial if call.initial is not None else {}
    if not isinstance(arguments, dict):
        return ToolCall(id=call.id, name=call.name, arguments={}, invalid=NOT_AN_OBJECT)
    return ToolCall(id=call.id, name=call.name, arguments=arguments)


class _BadStream(Exception):
    """The stream parsed but makes no sense; the message says how."""
