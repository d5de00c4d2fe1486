"""The Python client of the kaiwa (and Codeer chat v1) API, sync and async.

    from kaiwa.client import Client
    from kaiwa.protocol import OutputTextDelta

    client = Client(base_url="http://127.0.0.1:8000", api_key=KEY)
    chat = client.chats.create(name="support", agent_id=AGENT)
    with client.messages.stream(chat.id, message="営業時間は?", agent_id=AGENT) as stream:
        for event in stream:                     # typed events from kaiwa.protocol
            if isinstance(event, OutputTextDelta):
                print(event.delta, end="")
        text = stream.final_text()
    text = client.messages.send(chat.id, message="…", agent_id=AGENT)   # not streamed: the text

Also `client.forms` (answer a form a paused answer asks for), `client.files` (uploads to attach),
`client.batches` (messages answered in the background), `client.agents` and
`client.knowledge_bases` (management keys).

`AsyncClient` is the same with `await`, `async with` and `async for`. Streams resume by
themselves after a dropped connection (`ResumePolicy`); errors form one tree under `KaiwaError`
(see `kaiwa.client._exceptions`). Needs only httpx and pydantic: no server dependency.
"""

from kaiwa.client._base import DEFAULT_TIMEOUT, ResumePolicy
from kaiwa.client._calls import BatchRequest, BatchWebhook
from kaiwa.client._client import AsyncClient, Client
from kaiwa.client._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BadRequestError,
    ClientUserNotAllowedError,
    ConflictError,
    KaiwaError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    StreamError,
    UpstreamError,
)
from kaiwa.client._models import (
    Agent,
    AttachedFile,
    Batch,
    BatchItemResult,
    Chat,
    Document,
    Feedback,
    FormField,
    FormOption,
    FormRequest,
    KnowledgeBase,
    Message,
    Page,
    ResponseStatus,
    SearchHit,
    UploadedFile,
)
from kaiwa.client._streaming import AsyncStream, Stream

__all__ = [
    "DEFAULT_TIMEOUT",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "Agent",
    "AsyncClient",
    "AsyncStream",
    "AttachedFile",
    "BadRequestError",
    "Batch",
    "BatchItemResult",
    "BatchRequest",
    "BatchWebhook",
    "Chat",
    "Client",
    "ClientUserNotAllowedError",
    "ConflictError",
    "Document",
    "Feedback",
    "FormField",
    "FormOption",
    "FormRequest",
    "KaiwaError",
    "KnowledgeBase",
    "Message",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ResponseStatus",
    "ResumePolicy",
    "SearchHit",
    "ServerError",
    "Stream",
    "StreamError",
    "UploadedFile",
    "UpstreamError",
]
