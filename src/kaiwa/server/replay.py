"""An answer's stream or outcome given again: to a client that resumes it (`…/events`), and to a
repeated request (an `Idempotency-Key` used before, or a retried send carrying `Last-Event-ID`).

    cursor = parse_cursor(last_event_id, after)
    return await stream_answer(services, session, response_id, chat_id, cursor)
    return await answer_outcome(services, session, response_id)     # `stream: false`

The log is read while it is kept; once it is gone, the database's stored ending closes the
stream under the event id it had.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.bus import EventLog
from kaiwa.protocol import (
    ApiError,
    ErrorCode,
    OutputTextCompleted,
    ResponseError,
    TokenUsage,
    encode_frame,
)
from kaiwa.protocol.events import CompletedStatus
from kaiwa.protocol.sse import DONE, PING
from kaiwa.server.deps import Services
from kaiwa.server.envelope import ok
from kaiwa.server.sse import follow, sse_response
from kaiwa.server.tracing import link_to_answer
from kaiwa.store.models import Message
from kaiwa.store.models import Response as ResponseRecord

MAX_CURSOR = 2**53
"""The largest cursor a client can send: event ids are 1, 2, 3… within a response."""
# How long a running answer's missing log is waited for (see `_reappears`).
_REAPPEAR_POLLS = 30
_REAPPEAR_POLL_INTERVAL = 0.1
# The `completed` status that ended a stream, by the stored status of its response.
_ENDED_AS: dict[str, CompletedStatus] = {"cancelled": "cancelled", "awaiting_form": "awaiting_form"}
# How long past the idle timeout an outcome is waited for before the stored state is given.
_GRACE = 5.0


def parse_cursor(last_event_id: str | None, after: int | None = None) -> int:
    """The event id a client has seen: `Last-Event-ID` first, else `?after=`, else 0."""
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        # ASCII only: headers are Latin-1, where "²" is a digit to `isdigit` but not to `int`.
        if not (value.isascii() and value.isdigit()) or int(value) > MAX_CURSOR:
            raise ApiError(
                ErrorCode.BAD_REQUEST,
                f"Last-Event-ID must be an event id (a whole number ≥ 0), got {value[:40]!r}",
            )
        return int(value)
    return after or 0


async def stream_answer(
    services: Services,
    session: AsyncSession,
    response_id: str,
    chat_id: int,
    cursor: int,
    record: ResponseRecord | None = None,
) -> Response:
    """The answer's events after `cursor`, live while it runs, always ending with `[DONE]`.

    `record`, when the caller has it, spares a read. Raises 404 when the response is unknown
    (or not in `chat_id`) and its events are gone."""
    log = services.log
    metrics = services.metrics
    if services.settings.tracing_enabled:
        # The request links to the span that produced the answer, maybe on another replica.
        if record is None:
            record = await session.get(ResponseRecord, response_id)
        if record is not None and record.chat_id == chat_id:
            link_to_answer(record.trace_context)
    if await log.read(response_id, cursor, wait=0) is None:
        # The events are gone (retention passed, or the server restarted): end the stream with
        # the outcome the database kept, under its original id when known (else cursor + 1).
        if record is None:
            record = await session.get(ResponseRecord, response_id)
        if record is None or record.chat_id != chat_id:
            metrics.resumed("not_found")
            raise ApiError(ErrorCode.NOT_FOUND, f"Response {response_id} not found")
        if (
            record.status == "in_progress"
            and services.bus.shared
            and await _reappears(log, response_id, cursor)
        ):
            await session.commit()
            metrics.resumed("reappeared")
            return _follow(services, response_id, chat_id, cursor)
        message = await session.get(Message, record.assistant_message_id)
        await session.commit()
        if record.last_event_id is not None and cursor >= record.last_event_id:
            metrics.resumed("already_ended")
            return sse_response(_once(PING + DONE), response_id)  # the client saw the end
        ending = stored_ending(record, message, record.last_event_id or cursor + 1)
        metrics.resumed("stored_ending")
        return sse_response(_once(PING + ending + DONE), response_id)
    await session.commit()
    metrics.resumed("log")
    return _follow(services, response_id, chat_id, cursor)


async def answer_outcome(services: Services, session: AsyncSession, response_id: str) -> Response:
    """What `stream: false` answers: the final text once the answer has ended, or its error."""
    await _ended(services, response_id)
    record = await session.get(ResponseRecord, response_id, populate_existing=True)
    if record is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Response {response_id} not found")
    if services.settings.tracing_enabled:
        link_to_answer(record.trace_context)
    message = await session.get(Message, record.assistant_message_id, populate_existing=True)
    await session.commit()
    if record.status == "in_progress":
        raise ApiError(ErrorCode.SERVER_ERROR, "This response's outcome is not available")
    if record.status == "failed" or record.error_code is not None:
        code = record.error_code or int(ErrorCode.SERVER_ERROR)
        raise ApiError(ErrorCode(code), record.error_message or "The response failed")
    return ok(message.content if message is not None else "")


async def _ended(services: Services, response_id: str) -> None:
    """Wait until the answer's log ends (or is gone, or stays silent past the idle timeout)."""
    settings = services.settings
    wait = settings.ping_interval
    cursor, silent = 0, 0.0
    while silent <= settings.idle_timeout + _GRACE:
        read = await services.log.read(response_id, cursor, wait=wait)
        if read is None or read.finished:
            return
        if read.frames:
            cursor, silent = read.last, 0.0
        else:
            silent += wait


def _follow(services: Services, response_id: str, chat_id: int, cursor: int) -> Response:
    settings = services.settings
    body = follow(
        services.log,
        response_id,
        chat_id,
        after=cursor,
        ping_interval=settings.ping_interval,
        idle_timeout=settings.idle_timeout,
        open_streams=services.metrics.resumed_streams,
    )
    return sse_response(body, response_id)


async def _reappears(log: EventLog, response_id: str, cursor: int) -> bool:
    """Whether the log of a running answer shows up within a few seconds: after Redis restarts
    empty, the replica producing the answer writes its log there again."""
    for _ in range(_REAPPEAR_POLLS):
        await asyncio.sleep(_REAPPEAR_POLL_INTERVAL)
        if await log.read(response_id, cursor, wait=0) is not None:
            return True
    return False


def stored_ending(record: ResponseRecord, message: Message | None, event_id: int) -> bytes:
    """The frame that ended the answer, rebuilt from what the database kept."""
    if record.status == "in_progress":
        # Its producer is gone without a trace; a sweep will mark it failed.
        code, text = ErrorCode.SERVER_ERROR, "This response's events are no longer available"
        error = ResponseError(
            response_id=record.id, chat_id=record.chat_id, message=text, code=code
        )
        return encode_frame(event_id, error.type, error.model_dump_json())
    # An interrupted response is cancelled with an error (10010): its stream ended with the error.
    if record.status == "failed" or record.error_code is not None:
        error = ResponseError(
            response_id=record.id,
            chat_id=record.chat_id,
            message=record.error_message or "The response failed",
            code=record.error_code or int(ErrorCode.SERVER_ERROR),
        )
        return encode_frame(event_id, error.type, error.model_dump_json())
    meta = message.meta if message is not None else {}
    completed = OutputTextCompleted(
        response_id=record.id,
        chat_id=record.chat_id,
        final_text=message.content if message is not None else "",
        usage=TokenUsage.model_validate(meta.get("token_usage") or {}),
        status=_ENDED_AS.get(record.status, "completed"),
    )
    return encode_frame(event_id, completed.type, completed.model_dump_json())


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body
