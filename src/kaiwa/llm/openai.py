"""`openai`: any OpenAI-compatible chat completions server (OpenAI, Ollama, vLLM, llama.cpp, ...).

Maps a `ModelRequest` out to one streamed `chat.completions.create` call, the chunks back in as
`ModelEvent`s, and every SDK, `httpx2` or decoding failure to `ModelError` at the edge.

Deliberate choices:

- Retries are the SDK's own (`max_retries`: connection errors, 408/409/429/5xx, with backoff that
  honours `Retry-After`). They all happen before the first chunk; once the answer streams nothing
  is retried, since the user has already seen part of it.
- The deadlines are kaiwa's: `first_byte_timeout` over the whole call up to the first chunk
  (retries included), an `asyncio.timeout`, and `chunk_timeout` around each later read of the
  body, one `Deadlines` for every answer of the model (a timer each would cost an open answer
  ~670 bytes). They bound every read, so the SDK gets no read timeout of its own: on aiohttp
  it is one more timer per connection, re-armed at every read of the body.
- Error messages are built here from the status code, error code or address, never from the SDK's
  message or the server's body: those can quote the request, and OpenAI's 401 quotes the key.
- The request goes through the SDK's generic `post` (request, auth, retries, status errors are
  the SDK's), but the streamed body is read by `kaiwa.llm.stream`: each chunk a dict, with no
  typed `ChatCompletionChunk` (about 80 µs a chunk) and none of the SDK's per-event layers. A
  `data:` object with an `error` key is an in-stream error, as the SDK reads it.
- The SDK's HTTP transport is aiohttp (`openai.DefaultAioHttpClient`, the SDK's own option)
  when it is installed: its C parser reads a chunk for about half of httpx's CPU time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from kaiwa.config import ProviderSettings
from kaiwa.deadlines import Deadlines
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
from kaiwa.llm.stream import BadStream, Body, ReadWatch, json_events
from kaiwa.protocol.json_limits import parse_json

try:
    import httpx2
    import openai
    from openai.types.chat import (
        ChatCompletionAssistantMessageParam,
        ChatCompletionFunctionToolParam,
        ChatCompletionMessageParam,
    )
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the 'openai' model provider needs the openai SDK: pip install 'kaiwa[server]'"
    ) from exc

try:
    import aiohttp

    _HTTP_CLIENT: type[httpx2.AsyncClient] | None = openai.DefaultAioHttpClient
except ImportError:  # pragma: no cover - depends on the install: without the SDK's aiohttp extra
    aiohttp = None  # type: ignore[assignment]
    _HTTP_CLIENT = None

_STATUS_HINTS = {401: "API key rejected", 403: "access denied", 404: "unknown model or path"}
_NO_SDK_TELEMETRY: openai.RequestOptions = {
    "headers": {
        f"X-Stainless-{name}": openai.Omit()
        for name in (
            "Lang",
            "Package-Version",
            "OS",
            "Arch",
            "Runtime",
            "Runtime-Version",
            "Async",
            "Retry-Count",
            "Read-Timeout",
        )
    }
}
"""Request options that leave out the SDK's telemetry about itself (its version, the OS, the
Python runtime, the retry count, its read timeout): no model server needs them, and an open
answer keeps its request's headers, in four copies, for as long as it streams (~4 KB)."""


class OpenAIModel:
    """A `ChatModel` over the official `openai` SDK; one client per instance, built on first use."""

    def __init__(self, provider: str, model: str, settings: ProviderSettings) -> None:
        self._provider = provider
        self._model = model
        self._settings = settings
        self._client: openai.AsyncOpenAI | None = None
        self._stalls = Deadlines(settings.chunk_timeout, ReadWatch.expire)

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
        state = _ChunkState()
        body: Body | None = None
        reads: AsyncGenerator[list[object], None] | None = None
        streamed_text = False
        try:
            try:
                async with asyncio.timeout(settings.first_byte_timeout):
                    body = Body(await self._create(client, request))
                    reads = _chunks(body)
                    chunks = await anext(reads, None)
            except TimeoutError:
                limit = settings.first_byte_timeout
                raise self._error(f"no answer within first_byte_timeout ({limit:g} s)") from None
            stalls = self._stalls
            watch = ReadWatch()
            try:
                while chunks is not None:
                    for chunk in chunks:
                        for delta in state.apply(chunk):
                            streamed_text = True
                            yield delta
                    # Armed only while the body is awaited: the consumer's time with a delta
                    # (between the yields) never counts. One timer for every answer's reads.
                    stalls.arm(watch)
                    try:
                        chunks = await anext(reads, None)
                    finally:
                        stalls.disarm(watch)
            except asyncio.CancelledError:
                if not watch.timed_out():
                    raise
                limit = settings.chunk_timeout
                problem = f"the answer stalled for more than chunk_timeout ({limit:g} s)"
                raise self._error(problem, partial=streamed_text) from None
            for event in state.finish():
                yield event
        except BadStream as exc:
            raise self._error(str(exc), partial=streamed_text) from None
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            # `from None`: the SDK's exception may quote the server's body, and with it the key.
            problem = _describe(exc, client.base_url, connected=body is not None)
            raise self._error(problem, partial=streamed_text) from None
        finally:
            if reads is not None:
                await reads.aclose()
            if body is not None:
                await body.aclose()

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            settings = self._settings
            longest = max(settings.first_byte_timeout, settings.chunk_timeout)
            try:
                # None for api_key/base_url lets the SDK read OPENAI_API_KEY/OPENAI_BASE_URL.
                self._client = openai.AsyncOpenAI(
                    api_key=settings.api_key,
                    base_url=settings.base_url,
                    max_retries=settings.max_retries,
                    timeout=openai.Timeout(longest, connect=settings.connect_timeout, read=None),
                    http_client=_HTTP_CLIENT() if _HTTP_CLIENT is not None else None,
                )
            except openai.OpenAIError:
                raise ModelError(
                    f"provider {self._provider!r} has no API key: "
                    "set OPENAI_API_KEY or api_key in kaiwa.toml"
                ) from None
        return self._client

    async def _create(self, client: openai.AsyncOpenAI, request: ModelRequest) -> httpx2.Response:
        messages: list[ChatCompletionMessageParam] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.extend(_message_out(message) for message in request.messages)
        tools: list[ChatCompletionFunctionToolParam] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                },
            }
            for tool in request.tools
        ]
        body: dict[str, object] = {"model": self._model, "messages": messages, "stream": True}
        if self._settings.stream_usage:
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = tools
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        extra = request.settings  # passed as is: a bad value is the server's to reject
        for name in ("temperature", "top_p"):
            if name in extra:
                body[name] = extra[name]
        return await client.post(
            "/chat/completions",
            body=body,
            options=_NO_SDK_TELEMETRY,
            cast_to=httpx2.Response,
            stream=True,
        )

    def _error(self, problem: str, *, partial: bool = False) -> ModelError:
        return ModelError(f"openai provider {self._provider!r}: {problem}", partial=partial)


def _describe(exc: Exception, url: httpx2.URL, *, connected: bool) -> str:
    # Scheme, host and path only: user info or a query string could hold a secret.
    where = f"{url.scheme}://{url.netloc.decode()}{url.path}".rstrip("/")
    if isinstance(exc, openai.APIStatusError):
        notes = [_STATUS_HINTS.get(exc.status_code, "")]
        if exc.code and exc.code.isidentifier():  # e.g. context_length_exceeded
            notes.append(f"code {exc.code}")
        detail = ", ".join(note for note in notes if note)
        return f"HTTP {exc.status_code} from the model server at {where}" + (
            f" ({detail})" if detail else ""
        )
    if isinstance(exc, openai.APITimeoutError) and not _broken(exc):
        return f"timed out talking to {where}"
    if isinstance(exc, openai.APIConnectionError | httpx2.HTTPError):
        if connected:
            return f"the connection to {where} broke off mid-answer"
        return f"could not connect to {where}"
    return f"the model server at {where} sent an error ({type(exc).__name__})"


def _broken(exc: BaseException) -> bool:
    """Whether aiohttp's own error under `exc` is a connection that failed or broke rather than
    a timeout: the SDK's aiohttp transport reports every such error as an httpx2 timeout."""
    if aiohttp is None:  # pragma: no cover - depends on the install
        return False
    cause = exc.__cause__
    for _ in range(4):  # the SDK's error, the transport's, aiohttp's own
        if cause is None:
            return False
        if isinstance(cause, aiohttp.ServerTimeoutError):
            return False
        if isinstance(cause, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            return True
        cause = cause.__cause__
    return False


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class _ChunkState:
    """Folds chunks into events: text at once; tool calls and usage when the stream ends."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}
        self._usage: Usage | None = None

    def apply(self, chunk: object) -> list[TextDelta]:
        """One chunk as `json.loads` made it: a `chat.completion.chunk` object, unvalidated."""
        deltas: list[TextDelta] = []
        try:
            # Nothing validated the chunk, so one of the wrong shape shows up here as a
            # missing key or attribute, or a non-iterable.
            usage = chunk.get("usage")  # type: ignore[attr-defined]
            if usage is not None:
                prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
                self._usage = Usage(int(prompt or 0), int(completion or 0))
            for choice in chunk.get("choices") or ():  # type: ignore[attr-defined]
                delta = choice["delta"]
                content = delta.get("content")
                if content:
                    deltas.append(TextDelta(str(content)))
                for part in delta.get("tool_calls") or ():
                    call = self._calls.setdefault(self._index_of(part), _PartialCall())
                    call.id = part.get("id") or call.id
                    function = part.get("function")
                    if function is not None:
                        call.name = function.get("name") or call.name
                        call.arguments += function.get("arguments") or ""
        except (AttributeError, KeyError, TypeError, ValueError):
            raise BadStream("malformed chunk from the model server") from None
        return deltas

    def _index_of(self, part: dict[str, Any]) -> int:
        index, part_id = part.get("index"), part.get("id")
        if index is not None:
            return int(index)
        # Gemini's OpenAI-compatible endpoint leaves `index` out (each call whole in one
        # delta): a part with a new id opens a call, any other part goes on with the last one.
        for known, call in self._calls.items():
            if part_id and call.id == part_id:
                return known
        if part_id or not self._calls:
            return max(self._calls, default=-1) + 1
        return max(self._calls)

    def finish(self) -> list[ModelEvent]:
        events: list[ModelEvent] = []
        for index in sorted(self._calls):
            call = self._calls[index]
            try:
                arguments = parse_json(call.arguments or "{}")
            except ValueError:
                arguments = None
            call_id = call.id or f"call_{index}"
            if isinstance(arguments, dict):
                events.append(ToolCall(id=call_id, name=call.name, arguments=arguments))
            else:
                events.append(ToolCall(call_id, call.name, {}, invalid=NOT_AN_OBJECT))
        if self._usage is not None:
            events.append(self._usage)
        return events


def _chunks(body: Body) -> AsyncGenerator[list[object], None]:
    """The chunks of each read of the body, to `[DONE]`."""
    return json_events(body, keep=_not_an_error, end=b"[DONE]")


def _not_an_error(chunk: object) -> bool:
    """True, unless `chunk` is an error the server sent inside the stream (`BadStream`)."""
    if isinstance(chunk, dict) and chunk.get("error"):
        raise BadStream(_stream_error(chunk["error"]))
    return True


def _stream_error(error: object) -> str:
    """An error the server sent inside the stream. Only its code is quoted: the message may
    quote the request."""
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and code.isidentifier():
        return f"the model server sent an error mid-stream (code {code})"
    return "the model server sent an error mid-stream"


def _message_out(message: ChatMessage) -> ChatCompletionMessageParam:
    content = message.content
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": content}
    if message.role == "assistant":
        out: ChatCompletionAssistantMessageParam = {"role": "assistant", "content": content}
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": _json_text(call.arguments)},
                }
                for call in message.tool_calls
            ]
        return out
    if message.role == "system":
        return {"role": "system", "content": content}
    return {"role": "user", "content": content}


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)  # Japanese as is: fewer tokens upstream
