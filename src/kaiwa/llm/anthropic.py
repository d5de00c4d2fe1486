"""`anthropic`: Claude through the official SDK's Messages API.

Maps a `ModelRequest` out to one streamed `POST /v1/messages` call, the stream's events back in
as `ModelEvent`s, and every SDK, `httpx2` or decoding failure to `ModelError` at the edge.

Deliberate choices:

- Retries are the SDK's own (`max_retries`: connection errors, 408/409/429/5xx including 529
  overloaded, honouring `Retry-After`), all before the stream starts. An `error` event inside a
  started stream (how the API reports overload mid-answer) is not retried: it ends the call.
- `first_byte_timeout` runs from the call until the first content block starts, retries
  included: the API sends `message_start` at once and may then stay silent (pings aside, which
  count for nothing) until the model produces. After that `chunk_timeout` bounds the wait for
  each read of events.
- The API wants user and assistant turns to alternate and tool results as `tool_result` blocks
  of a user turn, so adjacent messages of one role become one message of blocks. Text blocks
  are left out when empty, since the API rejects them; `system` messages join the `system`
  parameter.
- Error messages are built here from the status code, the error type and the address, never
  from the SDK's message or the server's body: those can quote the request or the key.
- The request goes through the SDK's generic `post` with the path, body and tracing options of
  `messages.create`, so the same bytes go out (auth, `anthropic-version`, retries and status
  errors are the SDK's); but the streamed body is read by `kaiwa.llm.stream`: each event a
  dict, with no typed `RawMessageStreamEvent` and none of the SDK's per-event layers (an event
  costs about 10 µs instead of 50, transport aside). An event is told by its data's `type`,
  where the API repeats the `event:` name; one of type `error` is an in-stream error, as the
  SDK read it.
- The SDK's HTTP transport is aiohttp (`anthropic.DefaultAioHttpClient`, the SDK's own option)
  when it is installed: its C parser reads the body for a third of httpx's CPU time or less.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

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
from kaiwa.llm.stream import BadStream, Body, json_events
from kaiwa.protocol.json_limits import parse_json

try:
    import anthropic
    import httpx2
    from anthropic.types import ContentBlockParam, MessageParam, ToolParam, ToolResultBlockParam
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the 'anthropic' model provider needs the anthropic SDK: pip install 'kaiwa[server]'"
    ) from exc

_HTTP_CLIENT: type[httpx2.AsyncClient] | None = (
    anthropic.DefaultAioHttpClient if importlib.util.find_spec("aiohttp") else None
)
"""The SDK's aiohttp transport when its `aiohttp` extra is installed; None is the SDK's httpx."""

TITLE_MAX_TOKENS = 64
"""`max_tokens` of a title call that names none."""
SAMPLING_SETTINGS = ("temperature", "top_p", "top_k")
"""Agent model settings passed on to the API as is (a bad value is the API's to reject)."""

try:  # the SDK's own modules, not its API: without them, the call is simply not traced
    from anthropic._base_client import make_request_options
    from anthropic.lib._tracing import messages_create_request_attributes

    _CREATE: Any = make_request_options(
        span_name="anthropic.messages.create",
        span_route="/v1/messages",
        span_attributes=messages_create_request_attributes,
    )
except ImportError:  # pragma: no cover - depends on the SDK's version
    _CREATE = {}  # the SDK's request options, none
"""What `messages.create` tells the SDK's tracing about its call. With it the SDK still sends
the `traceparent` of the span current at the call (kaiwa's model call, when tracing is on)."""

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
        settings = self._settings
        state = _EventState()
        body: Body | None = None
        reads: AsyncGenerator[list[object], None] | None = None
        streamed_text = False
        loop = asyncio.get_running_loop()
        first_byte = loop.time() + settings.first_byte_timeout
        try:
            try:
                # One deadline, armed only while the body is awaited: the consumer's time with
                # an event (between the yields) never counts. Until a content block starts it
                # is `first_byte`, over the call and its retries; then chunk_timeout per read.
                async with asyncio.timeout_at(first_byte) as deadline:
                    body = Body(await self._create(client, request))
                    reads = _events(body)
                    while (events := await anext(reads, None)) is not None:
                        deadline.reschedule(None)
                        for event in events:
                            out = state.apply(event)
                            if out is not None:
                                streamed_text = streamed_text or isinstance(out, TextDelta)
                                yield out
                        if state.answering:
                            deadline.reschedule(loop.time() + settings.chunk_timeout)
                        else:
                            deadline.reschedule(first_byte)
            except TimeoutError:
                if not state.answering:
                    raise self._first_byte_error() from None
                limit = settings.chunk_timeout
                problem = f"the answer stalled for more than chunk_timeout ({limit:g} s)"
                raise self._error(problem, partial=streamed_text) from None
            for out in state.finish():
                yield out
        except BadStream as exc:
            raise self._error(str(exc), partial=streamed_text) from None
        except (anthropic.AnthropicError, httpx2.HTTPError, _ErrorEvent) as exc:
            # `from None`: the SDK's exception quotes the server's body.
            problem = _describe(exc, client.base_url, connected=body is not None)
            raise self._error(problem, partial=streamed_text) from None
        finally:
            if reads is not None:
                await reads.aclose()
            if body is not None:
                await body.aclose()

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
                    http_client=_HTTP_CLIENT() if _HTTP_CLIENT is not None else None,
                )
            except (anthropic.AnthropicError, ValueError):
                raise self._no_key() from None
        client = self._client
        if client.api_key is None and client.auth_token is None and client.credentials is None:
            raise self._no_key()
        return client

    async def _create(
        self, client: anthropic.AsyncAnthropic, request: ModelRequest
    ) -> httpx2.Response:
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
        # `messages.create`'s body, key for key in its order (the sampling settings were its
        # `extra_body`, merged last): the bytes sent are the same.
        body: dict[str, object] = {
            "max_tokens": max_tokens,
            "messages": messages_out(request.messages),
            "model": self._model,
            "stream": True,
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = tools
        for key in SAMPLING_SETTINGS:
            if key in request.settings:
                body[key] = request.settings[key]
        return await client.post(
            "/v1/messages", body=body, options=_CREATE, cast_to=httpx2.Response, stream=True
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
    if isinstance(exc, _ErrorEvent):
        return f"the model server at {where} failed mid-stream{_detail(None, exc.kind)}"
    if isinstance(exc, anthropic.APIStatusError):
        detail = _detail(exc.status_code, exc.type)
        return f"HTTP {exc.status_code} from the model server at {where}{detail}"
    if isinstance(exc, anthropic.APITimeoutError):
        return f"timed out talking to {where}"
    if isinstance(exc, anthropic.APIConnectionError | httpx2.HTTPError):
        if connected:
            return f"the connection to {where} broke off mid-answer"
        return f"could not connect to {where}"
    return f"the call to {where} failed ({type(exc).__name__})"


def _detail(status: int | None, kind: object) -> str:
    """What the status code and the error type say, in brackets; the type is quoted only when
    it is a known one or an identifier."""
    kind = kind if isinstance(kind, str) and kind.isidentifier() else None
    hint = _STATUS_HINTS.get(status or 0) or _TYPE_HINTS.get(kind or "", "")
    notes = [hint, f"type {kind}" if kind and kind not in _TYPE_HINTS else ""]
    detail = ", ".join(note for note in notes if note)
    return f" ({detail})" if detail else ""


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
        self._calls: dict[object, _PartialCall] = {}  # by the block's index
        self._tokens = dict.fromkeys(_USAGE_FIELDS, 0)
        self._started = False
        self._stopped = False

    def apply(self, event: Any) -> ModelEvent | None:
        """One event as the parser made it: a dict of a type the Messages API streams,
        unvalidated. Types it does not know are skipped."""
        try:
            # Nothing validated the event, so one of the wrong shape shows up here as a
            # missing key or attribute, or a wrong type.
            kind = event["type"]
            if kind == "content_block_delta":  # first: nearly every event is one
                self.answering = True
                delta = event["delta"]
                delta_type = delta["type"]
                if delta_type == "text_delta":
                    text = delta["text"]
                    return TextDelta(str(text)) if text else None
                if delta_type == "input_json_delta":
                    call = self._calls.get(event["index"])
                    if call is None:
                        raise BadStream("tool input streamed for a block that is not a tool call")
                    call.arguments += str(delta["partial_json"])
            elif kind == "content_block_start":
                self.answering = True
                block = event["content_block"]
                if block["type"] == "tool_use":
                    call = _PartialCall(block["id"], block["name"], initial=block["input"])
                    self._calls[event["index"]] = call
            elif kind == "content_block_stop":
                call = self._calls.pop(event["index"], None)
                if call is not None:
                    return _finish_call(call)
            elif kind == "message_start":
                self._started = True
                self._count(event["message"]["usage"])
            elif kind == "message_delta":
                self._count(event["usage"])
            elif kind == "message_stop":
                self._stopped = True
            elif kind == "error":
                error = event.get("error")
                raise _ErrorEvent(error.get("type") if isinstance(error, dict) else None)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise BadStream("malformed event from the model server") from None
        return None

    def _count(self, usage: object) -> None:
        # Cumulative counts; message_delta may repeat the input counts or leave them out.
        if not isinstance(usage, dict):
            return
        for name in _USAGE_FIELDS:
            value = usage.get(name)
            if value is not None:
                self._tokens[name] = int(value)

    def finish(self) -> list[ModelEvent]:
        if not self._stopped or self._calls:
            raise BadStream("the stream ended before the message did")
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


def _events(body: Body) -> AsyncGenerator[list[object], None]:
    """The events of each read of the body, to its end. Pings are keep-alives, no sign that
    the answer goes on: as when the SDK swallowed them, they neither end a deadline's wait nor
    start a new one, so they are left out here."""
    return json_events(body, keep=_not_a_ping)


def _not_a_ping(event: object) -> bool:
    return not (isinstance(event, dict) and event.get("type") == "ping")


class _ErrorEvent(Exception):
    """An `error` event: the server failed mid-stream. Only its error type is kept, never its
    message, which may quote the request."""

    def __init__(self, kind: object) -> None:
        super().__init__(kind)
        self.kind = kind
