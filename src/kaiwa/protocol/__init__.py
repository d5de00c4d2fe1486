"""The wire format, pure: event models, SSE framing, error codes and the JSON envelope.

Imported by the server, the runtime and the clients alike; imports nothing else of kaiwa.
"""

from kaiwa.protocol.envelope import Envelope, Pagination
from kaiwa.protocol.errors import ApiError, ErrorCode
from kaiwa.protocol.events import (
    ChatTitleUpdated,
    Event,
    OutputTextCompleted,
    OutputTextDelta,
    ReasoningStepEnd,
    ReasoningStepStart,
    ResponseCreated,
    ResponseError,
    StepEnd,
    StepResult,
    StepStart,
    StepType,
    TokenUsage,
    parse_event,
)
from kaiwa.protocol.sse import DONE, ServerSentEvent, SSEDecoder, encode_frame
from kaiwa.protocol.state import ResponseState

__all__ = [
    "DONE",
    "ApiError",
    "ChatTitleUpdated",
    "Envelope",
    "ErrorCode",
    "Event",
    "OutputTextCompleted",
    "OutputTextDelta",
    "Pagination",
    "ReasoningStepEnd",
    "ReasoningStepStart",
    "ResponseCreated",
    "ResponseError",
    "ResponseState",
    "SSEDecoder",
    "ServerSentEvent",
    "StepEnd",
    "StepResult",
    "StepStart",
    "StepType",
    "TokenUsage",
    "encode_frame",
    "parse_event",
]
