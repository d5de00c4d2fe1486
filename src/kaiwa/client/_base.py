"""What `Client` and `AsyncClient` share, with no I/O: settings, requests, answers, resume.

The I/O classes use three things from here. `BaseClient.build(call)` gives the `httpx.Request` of
one endpoint call (a `Call`, from `_calls`); `BaseClient.result(call, response)` turns the answer
into a model or raises its error (`BaseClient.content(response)` for a download's bytes); and a
`StreamCursor` turns a stream's bytes into typed events, across as many connections as it takes,
and says when and where to reconnect::

    cursor = StreamCursor(chat_id=12, policy=ResumePolicy())
    cursor.opened(response)                       # each connection: new decoder, response id
    for event in cursor.feed(chunk): ...          # typed events, never one twice
    delay = cursor.ended(failure)                 # None: over; else reconnect after `delay` s
    request = client.resume_request(cursor)       # GET …/events with Last-Event-ID

Deliberate oddities: the cursor resumes after the id of the last *dispatched* event, not after
the decoder's `last_event_id`, which an `id:` line of a frame cut in half has already moved.
Retry budgets restart whenever a connection delivers a new event, so a long answer survives any
number of cuts as long as each reconnection makes progress.
"""

from __future__ import annotations

import email.utils
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import JsonValue, ValidationError

import kaiwa
from kaiwa.client._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    KaiwaError,
    RateLimitedError,
    StreamError,
    error_for_event,
    error_for_status,
)
from kaiwa.protocol import (
    Event,
    OutputTextCompleted,
    Pagination,
    ResponseError,
    ResponseState,
    ServerSentEvent,
    SSEDecoder,
    parse_event,
)
from kaiwa.protocol.errors import FieldError

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(90.0, connect=10.0)
"""90 s to read: the server pings every 15 s, and ends a silent answer itself after 90 s."""
API_PREFIX = "/api/v1"
USER_AGENT = f"kaiwa-python/{kaiwa.__version__}"
RESPONSE_ID_HEADER = "x-kaiwa-response-id"

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
Params = Mapping[str, str | int]
JsonBody = Mapping[str, JsonValue]
FilePart = tuple[str, bytes | IO[bytes], str]
"""One file of a multipart body: name, content, content type."""


@dataclass(frozen=True, slots=True)
class ResumePolicy:
    """How a stream reconnects after its connection drops.

    >>> ResumePolicy().delay(1), ResumePolicy().delay(3), ResumePolicy().delay(10)
    (0.5, 2.0, 8.0)

    `attempts=0` turns resuming off: a drop raises `APIConnectionError` at once.
    """

    attempts: int = 5
    """Reconnections in a row without a new event before giving up."""
    backoff: float = 0.5
    """Seconds before the first reconnection; doubled for each further one."""
    max_backoff: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One endpoint call, described: what to send, and how to read the envelope's data."""

    method: Method
    path: str
    """Below `/api/v1`, with its parameters already quoted."""
    parse: Callable[[JsonValue, Pagination | None], T]
    params: Params | None = None
    json: JsonBody | None = None
    timeout: httpx.Timeout | None = None
    files: Mapping[str, FilePart] | None = None
    """Multipart file parts; with `form`, the body is `multipart/form-data`."""
    form: Mapping[str, str] | None = None
    """Multipart text fields."""
    accept: str = "application/json"
    headers: Mapping[str, str] | None = None


def segment(value: object) -> str:
    """One path segment: an id as text, quoted so that it can never change the path."""
    return quote(str(value), safe="")


class BaseClient:
    """Settings and the pure halves of every call; `Client` and `AsyncClient` add the I/O."""

    def __init__(
        self,
        *,
        base_url: str | httpx.URL | None,
        api_key: str | None,
        timeout: float | httpx.Timeout,
        resume: ResumePolicy,
        headers: Mapping[str, str] | None,
    ) -> None:
        base_url = base_url or os.environ.get("KAIWA_BASE_URL") or DEFAULT_BASE_URL
        api_key = api_key if api_key is not None else os.environ.get("KAIWA_API_KEY")
        if not api_key:
            raise KaiwaError("An API key is needed: pass api_key=… or set KAIWA_API_KEY")
        url = httpx.URL(str(base_url))
        # Accept the base URL with or without the API prefix: both appear in examples.
        path = url.path.rstrip("/").removesuffix(API_PREFIX)
        self.base_url = url.copy_with(path=path + API_PREFIX, query=None, fragment=None)
        self.api_key = api_key
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.resume = resume
        self._headers = {"user-agent": USER_AGENT, **(headers or {}), "x-api-key": api_key}

    def request(
        self,
        method: Method,
        path: str,
        *,
        params: Params | None = None,
        json: JsonBody | None = None,
        files: Mapping[str, FilePart] | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Request:
        url = self.base_url.copy_with(path=self.base_url.path + path)
        return httpx.Request(
            method,
            url,
            params=dict(params) if params else None,
            json=json,
            files=dict(files) if files else None,
            data=dict(form) if form else None,
            headers={"accept": "application/json", **self._headers, **(headers or {})},
            extensions={"timeout": (timeout or self.timeout).as_dict()},
        )

    def build(self, call: Call[T], *, stream: bool = False) -> httpx.Request:
        return self.request(
            call.method,
            call.path,
            params=call.params,
            json=call.json,
            files=call.files,
            form=call.form,
            headers={
                "accept": "text/event-stream" if stream else call.accept,
                **(call.headers or {}),
            },
            timeout=call.timeout,
        )

    def resume_request(self, cursor: StreamCursor) -> httpx.Request:
        """The events endpoint of the cursor's response, after the last event it delivered."""
        assert cursor.response_id is not None
        path = f"/chats/{cursor.chat_id}/responses/{segment(cursor.response_id)}/events"
        headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
        if cursor.last_event_id is not None:
            headers["last-event-id"] = str(cursor.last_event_id)
        return self.request("GET", path, headers=headers)

    def result(self, call: Call[T], response: httpx.Response) -> T:
        """The call's model, from a read response; raises the mapped `APIError` on an error."""
        body = _json(response)
        if response.is_error or not isinstance(body, dict) or body.get("error_code", 0) != 0:
            raise error_from_response(response)
        pagination = body.get("pagination")
        page = Pagination.model_validate(pagination) if pagination is not None else None
        try:
            return call.parse(body.get("data"), page)
        except ValidationError as exc:
            raise KaiwaError(f"Unexpected answer from {call.method} {call.path}: {exc}") from exc

    @staticmethod
    def content(response: httpx.Response) -> bytes:
        """The bytes of a read answer that is not an envelope (a download); raises on an error."""
        if response.is_error:
            raise error_from_response(response)
        return response.content


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error answer (a read response); works for non-JSON bodies too."""
    body = _json(response)
    code, message = 0, None
    errors: tuple[FieldError, ...] = ()
    if isinstance(body, dict):
        raw_code = body.get("error_code")
        code = raw_code if isinstance(raw_code, int) else 0
        raw_message = body.get("message")
        message = raw_message if isinstance(raw_message, str) else None
        errors = _field_errors(body.get("errors"))
    if message is None:
        message = response.reason_phrase or f"HTTP {response.status_code}"
    status = response.status_code if response.is_error else 500
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return error_for_status(status, code, message, retry_after=retry_after, errors=errors)


def _field_errors(raw: object) -> tuple[FieldError, ...]:
    """The envelope's `errors` list, ignoring what is not `{field, reason}`."""
    if not isinstance(raw, list):
        return ()
    return tuple(
        FieldError(field=item["field"], reason=item["reason"])
        for item in raw
        if isinstance(item, dict)
        and isinstance(item.get("field"), str)
        and isinstance(item.get("reason"), str)
    )


def is_event_stream(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return response.status_code == 200 and content_type.startswith("text/event-stream")


def stream_refused(response: httpx.Response) -> KaiwaError:
    """Why a (read) answer that should have been an event stream is not one."""
    body = _json(response)
    if response.is_error or (isinstance(body, dict) and body.get("error_code", 0) != 0):
        return error_from_response(response)
    content_type = response.headers.get("content-type", "no content type")
    return KaiwaError(f"Expected an event stream, got HTTP {response.status_code} ({content_type})")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header: a number of seconds, or an HTTP date.

    >>> parse_retry_after("7")
    7.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT",
    ...                   now=datetime(2015, 10, 21, 7, 28, tzinfo=UTC))
    30.0
    """
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _json(response: httpx.Response) -> JsonValue:
    try:
        value: JsonValue = response.json()
    except ValueError:
        return None
    return value


def connection_error(exc: httpx.TransportError, what: str) -> APIConnectionError:
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return cls(f"{what}: {type(exc).__name__}: {exc}".rstrip(": "))


class StreamCursor:
    """A stream's bookkeeping across its connections: decode, deduplicate, fold, resume."""

    def __init__(
        self,
        *,
        chat_id: int,
        policy: ResumePolicy,
        response_id: str | None = None,
        after: int | None = None,
    ) -> None:
        self.chat_id = chat_id
        self.response_id = response_id
        self.policy = policy
        self.last_event_id = after
        """The id of the last event delivered (or the cursor the stream started after)."""
        self.state = ResponseState()
        self.error: StreamError | None = None
        """The `response.error` that ended the stream, as the exception to raise."""
        self.finished = False
        """The terminal event or `[DONE]` has arrived: nothing is left to resume."""
        self.failures = 0
        self._delivered_unnumbered = False
        self._decoder = SSEDecoder()

    def opened(self, response: httpx.Response) -> None:
        """A connection answered 200: its frames start afresh; a cut one is forgotten."""
        self._decoder = SSEDecoder()
        self.response_id = self.response_id or response.headers.get(RESPONSE_ID_HEADER)

    def feed(self, chunk: bytes) -> Iterator[Event]:
        """The new events in these bytes. `response.error` is kept as `error`, not yielded.

        Lazy: each event reaches `state` and `last_event_id` as it is handed out, so both
        describe exactly what the caller has seen.
        """
        for sse in self._decoder.decode(chunk):
            event = self._take(sse)
            if event is not None:
                yield event

    def ended(self, failure: Exception | None) -> float | None:
        """A body ended, cleanly or with `failure`, or a reconnection failed.

        Returns None when the stream is over, else the seconds to wait before reconnecting.
        Raises a non-retryable `APIError` as it is, and `APIConnectionError` once resuming is
        impossible or the attempts are used up.
        """
        self._decoder.flush()
        if self.finished:
            return None
        if isinstance(failure, APIError) and not _retryable(failure):
            raise failure
        self.failures += 1
        reason = _describe(failure)
        if self.response_id is None or self._delivered_unnumbered:
            message = f"The stream broke off and cannot be resumed ({reason})"
            raise _gave_up(failure, message) from failure
        if self.failures > self.policy.attempts:
            raise _gave_up(
                failure,
                f"The stream broke off and {self.policy.attempts} attempts to resume it "
                f"failed (last: {reason})",
            ) from failure
        delay = self.policy.delay(self.failures)
        if isinstance(failure, RateLimitedError) and failure.retry_after is not None:
            delay = max(delay, min(failure.retry_after, self.policy.max_backoff))
        return delay

    def _take(self, sse: ServerSentEvent) -> Event | None:
        if sse.data == "[DONE]":
            self.finished = True
            return None
        if self.finished:
            return None
        event_id = (
            int(sse.id) if sse.id is not None and sse.id.isascii() and sse.id.isdigit() else None
        )
        last = self.last_event_id
        if event_id is not None and last is not None and event_id <= last:
            return None  # replayed by a resume: the caller has it already
        event = _parse(sse.data)
        if event_id is not None:
            self.last_event_id = event_id
        else:
            self._delivered_unnumbered = True
        if event is None:
            return None
        self.failures = 0
        self.state.apply(event)
        self.response_id = self.response_id or event.response_id
        if isinstance(event, ResponseError):
            self.error = error_for_event(event)
            self.finished = True
            return None
        if isinstance(event, OutputTextCompleted):
            self.finished = True
        return event


def _parse(data: str) -> Event | None:
    """The event, or None for an event type this client does not know (a newer server's)."""
    try:
        return parse_event(data)
    except ValidationError as exc:
        if any(error["type"] == "union_tag_invalid" for error in exc.errors()):
            return None
        raise KaiwaError(f"Malformed event in the stream: {data[:200]!r}") from exc


def _retryable(error: APIError) -> bool:
    return isinstance(error, RateLimitedError) or (error.status or 0) >= 500


def _describe(failure: Exception | None) -> str:
    if failure is None:
        return "the body ended before [DONE]"
    return f"{type(failure).__name__}: {failure}".rstrip(": ")


def _gave_up(failure: Exception | None, message: str) -> APIConnectionError:
    if isinstance(failure, httpx.TimeoutException):
        return APITimeoutError(message)
    return APIConnectionError(message)
