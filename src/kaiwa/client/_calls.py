"""Every endpoint the client calls, as a pure `Call`: method, path, query, body, and the parser of
its data. The sync and async namespaces in `_resources` send these and nothing else, so the two
can never disagree on the wire::

    call = create_chat(name="support", agent_id=AGENT)
    call.method, call.path, call.json      # ('POST', '/chats', {'name': 'support', ...})
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Required, TypedDict, TypeVar
from uuid import UUID, uuid4

import httpx
from pydantic import BaseModel, JsonValue

from kaiwa.client._base import Call, FilePart, JsonBody, Params, segment
from kaiwa.client._exceptions import KaiwaError
from kaiwa.client._models import (
    Agent,
    Batch,
    BatchItemResult,
    Chat,
    Document,
    Feedback,
    FeedbackType,
    FileScope,
    KnowledgeBase,
    Message,
    Page,
    ResponseStatus,
    SearchHit,
    UploadedFile,
)
from kaiwa.protocol import Pagination

M = TypeVar("M", bound=BaseModel)

OrderBy = Literal["created_at", "-created_at", "asc", "ascending", "desc", "descending"]
OnDisconnect = Literal["continue", "cancel"]
"""[ext] `continue`: a dropped client does not stop the answer (the default); `cancel`: it does."""
IfBusy = Literal["reject", "interrupt"]
"""[ext] A response already runs on the chat: `reject` (409, the default) or `interrupt` it."""
AgentId = str | UUID
Id = str | UUID
JsonObject = Mapping[str, JsonValue]
FormValues = Mapping[str, JsonValue]
"""`{field name: value}`: a string, a number, a `YYYY-MM-DD` date, an option value, or a list
of option values (checkbox); leave out an optional field to skip it."""

DEFAULT_LIMIT = 50


class BatchRequest(TypedDict, total=False):
    """One request of a batch: `{"custom_id": "q-1", "message": "…"}` and, optionally, the rest."""

    custom_id: Required[str]
    """Yours, to match results with requests: unique within the batch, at most 256 chars."""
    message: Required[str]
    agent_id: AgentId
    """Another agent than the batch's, for this request."""
    external_user_id: str
    name: str
    """The name of the chat created for it (its `custom_id` when none)."""
    attached_file_uuids: Sequence[str | UUID]
    history_id: int
    """A chat to continue (it must belong to the request's agent) instead of a new one."""


class BatchWebhook(TypedDict, total=False):
    """Where to POST the batch once it ends: `{"url": "https://…", "secret": "…"}`."""

    url: Required[str]
    events: Sequence[Literal["completed", "failed", "cancelled"]]
    """Default: completed and failed."""
    secret: str
    """Signs each delivery: `X-Codeer-Signature: sha256=<hex HMAC-SHA256(secret, body)>`."""


def _model(cls: type[M]) -> Callable[[JsonValue, Pagination | None], M]:
    return lambda data, _pagination: cls.model_validate(data)


def _models(data: JsonValue) -> list[JsonValue]:
    if not isinstance(data, list):
        raise KaiwaError(f"Expected a list in the envelope's data, got {type(data).__name__}")
    return data


def _list(cls: type[M]) -> Callable[[JsonValue, Pagination | None], list[M]]:
    return lambda data, _pagination: [cls.model_validate(item) for item in _models(data)]


def _page(cls: type[M]) -> Callable[[JsonValue, Pagination | None], Page[M]]:
    def parse(data: JsonValue, pagination: Pagination | None) -> Page[M]:
        return Page(
            items=[cls.model_validate(item) for item in _models(data)], pagination=pagination
        )

    return parse


def _text(data: JsonValue, _pagination: Pagination | None) -> str:
    if not isinstance(data, str):
        raise KaiwaError(f"Expected the answer's text in the envelope, got {type(data).__name__}")
    return data


def _nothing(_data: JsonValue, _pagination: Pagination | None) -> None:
    return None


def _body(**fields: JsonValue) -> JsonBody:
    """A JSON body without the fields left unset (None): the server's defaults apply."""
    return {name: value for name, value in fields.items() if value is not None}


def _paging(limit: int, offset: int, **filters: str | int | None) -> Params:
    params: dict[str, str | int] = {"limit": limit, "offset": offset}
    params.update({name: value for name, value in filters.items() if value is not None})
    return params


def next_page(page: Page[M]) -> int | None:
    """The offset of the page after `page`, or None on the last one."""
    if page.pagination is None or not page.has_next:
        return None
    return page.pagination.offset + page.pagination.limit


# -- chats ---------------------------------------------------------------------------------------


def published_agents() -> Call[list[Agent]]:
    return Call("GET", "/chats/published-agents", _list(Agent))


def create_chat(*, name: str, agent_id: AgentId, external_user_id: str | None = None) -> Call[Chat]:
    body = _body(name=name, agent_id=str(agent_id), external_user_id=external_user_id)
    return Call("POST", "/chats", _model(Chat), json=body)


def list_chats(
    *,
    agent_id: AgentId | None = None,
    external_user_id: str | None = None,
    order_by: OrderBy | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> Call[Page[Chat]]:
    params = _paging(
        limit,
        offset,
        agent_id=str(agent_id) if agent_id is not None else None,
        external_user_id=external_user_id,
        order_by=order_by,
    )
    return Call("GET", "/chats", _page(Chat), params=params)


def rename_chat(chat_id: int, *, name: str) -> Call[Chat]:
    return Call("PUT", f"/chats/{segment(chat_id)}", _model(Chat), json={"name": name})


# -- messages ------------------------------------------------------------------------------------


def list_messages(
    chat_id: int, *, limit: int = DEFAULT_LIMIT, offset: int = 0
) -> Call[Page[Message]]:
    path = f"/chats/{segment(chat_id)}/messages"
    return Call("GET", path, _page(Message), params=_paging(limit, offset))


def send_message(
    chat_id: int,
    *,
    message: str,
    agent_id: AgentId,
    stream: bool,
    external_user_id: str | None = None,
    attached_file_uuids: Sequence[str | UUID] | None = None,
    include_tool_tags: bool | None = None,
    on_disconnect: OnDisconnect | None = None,
    if_busy: IfBusy | None = None,
    timeout: float | httpx.Timeout | None = None,
    idempotency_key: str | None = None,
) -> Call[str]:
    files: list[JsonValue] | None = None
    if attached_file_uuids is not None:
        files = [str(uuid) for uuid in attached_file_uuids]
    body = _body(
        message=message,
        agent_id=str(agent_id),
        stream=stream,
        external_user_id=external_user_id,
        attached_file_uuids=files,
        include_tool_tags=include_tool_tags,
        on_disconnect=on_disconnect,
        if_busy=if_busy,
    )
    path = f"/chats/{segment(chat_id)}/messages"
    headers = _idempotent(idempotency_key)
    return Call("POST", path, _text, json=body, timeout=_timeout(timeout), headers=headers)


def regenerate(
    chat_id: int,
    *,
    agent_id: AgentId,
    stream: bool,
    external_user_id: str | None = None,
    include_tool_tags: bool | None = None,
    on_disconnect: OnDisconnect | None = None,
    if_busy: IfBusy | None = None,
    timeout: float | httpx.Timeout | None = None,
    idempotency_key: str | None = None,
) -> Call[str]:
    body = _body(
        agent_id=str(agent_id),
        stream=stream,
        external_user_id=external_user_id,
        include_tool_tags=include_tool_tags,
        on_disconnect=on_disconnect,
        if_busy=if_busy,
    )
    path = f"/chats/{segment(chat_id)}/regenerate"
    headers = _idempotent(idempotency_key)
    return Call("POST", path, _text, json=body, timeout=_timeout(timeout), headers=headers)


def submit_form(
    chat_id: int,
    form_request_id: Id,
    *,
    values: FormValues,
    stream: bool,
    agent_id: AgentId | None = None,
    external_user_id: str | None = None,
    include_tool_tags: bool | None = None,
    on_disconnect: OnDisconnect | None = None,
    timeout: float | httpx.Timeout | None = None,
    idempotency_key: str | None = None,
) -> Call[str]:
    body = _body(
        values=dict(values),
        stream=stream,
        agent_id=str(agent_id) if agent_id is not None else None,
        external_user_id=external_user_id,
        include_tool_tags=include_tool_tags,
        on_disconnect=on_disconnect,
    )
    path = f"/chats/{segment(chat_id)}/form-requests/{segment(form_request_id)}/submit"
    headers = _idempotent(idempotency_key)
    return Call("POST", path, _text, json=body, timeout=_timeout(timeout), headers=headers)


def _idempotent(key: str | None) -> dict[str, str]:
    """The `Idempotency-Key` header: the caller's key, else a new one. A request repeated
    with the same key (within 24 h) gets the first one's answer instead of starting another."""
    return {"idempotency-key": key if key is not None else str(uuid4())}


def _timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout | None:
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout)


# -- files ---------------------------------------------------------------------------------------


def upload_file(part: FilePart, *, scope: FileScope = "persistent") -> Call[UploadedFile]:
    # `data` is a JSON string in a text part, as in Codeer's API.
    form = {"data": json.dumps({"scope": scope})}
    return Call("POST", "/chats/upload-file", _model(UploadedFile), files={"file": part}, form=form)


def download_file(file_uuid: Id) -> Call[None]:
    """The file's bytes (read with `BaseClient.content`, never as an envelope)."""
    return Call("GET", f"/chats/files/{segment(file_uuid)}", _nothing, accept="*/*")


# -- feedback ------------------------------------------------------------------------------------


def give_feedback(
    chat_id: int,
    message_id: int,
    *,
    type: FeedbackType,
    content: str | None = None,
    external_user_id: str | None = None,
) -> Call[Feedback]:
    path = f"/chats/{segment(chat_id)}/messages/{segment(message_id)}/feedbacks"
    body = _body(type=type, content=content, external_user_id=external_user_id)
    return Call("POST", path, _model(Feedback), json=body)


# -- responses [ext] -----------------------------------------------------------------------------


def _response_path(chat_id: int, response_id: str) -> str:
    return f"/chats/{segment(chat_id)}/responses/{segment(response_id)}"


def response_status(chat_id: int, response_id: str) -> Call[ResponseStatus]:
    return Call("GET", _response_path(chat_id, response_id), _model(ResponseStatus))


def cancel_response(chat_id: int, response_id: str) -> Call[ResponseStatus]:
    path = _response_path(chat_id, response_id) + "/cancel"
    return Call("POST", path, _model(ResponseStatus))


def response_events(chat_id: int, response_id: str, *, after: int | None = None) -> Call[None]:
    """The events stream of a response (read by a `Stream`, never parsed as an envelope)."""
    params = {"after": after} if after is not None else None
    return Call("GET", _response_path(chat_id, response_id) + "/events", _nothing, params=params)


# -- agents [ext] --------------------------------------------------------------------------------


def _agent_fields(
    *,
    name: str | None,
    description: str | None,
    system_prompt: str | None,
    llm_model: str | None,
    unified_tools: Sequence[JsonObject] | None,
    suggested_questions: Sequence[str] | None,
    meta: JsonObject | None,
) -> JsonBody:
    tools: list[JsonValue] | None = None
    if unified_tools is not None:
        tools = [dict(tool) for tool in unified_tools]
    questions: list[JsonValue] | None = None
    if suggested_questions is not None:
        questions = list(suggested_questions)
    return _body(
        name=name,
        description=description,
        system_prompt=system_prompt,
        llm_model=llm_model,
        unified_tools=tools,
        suggested_questions=questions,
        meta=dict(meta) if meta is not None else None,
    )


def create_agent(
    *,
    name: str,
    description: str | None = None,
    system_prompt: str | None = None,
    llm_model: str | None = None,
    unified_tools: Sequence[JsonObject] | None = None,
    suggested_questions: Sequence[str] | None = None,
    meta: JsonObject | None = None,
) -> Call[Agent]:
    body = _agent_fields(
        name=name,
        description=description,
        system_prompt=system_prompt,
        llm_model=llm_model,
        unified_tools=unified_tools,
        suggested_questions=suggested_questions,
        meta=meta,
    )
    return Call("POST", "/agents", _model(Agent), json=body)


def list_agents(*, limit: int = DEFAULT_LIMIT, offset: int = 0) -> Call[Page[Agent]]:
    return Call("GET", "/agents", _page(Agent), params=_paging(limit, offset))


def get_agent(agent_id: AgentId) -> Call[Agent]:
    return Call("GET", f"/agents/{segment(agent_id)}", _model(Agent))


def update_agent(
    agent_id: AgentId,
    *,
    name: str | None = None,
    description: str | None = None,
    system_prompt: str | None = None,
    llm_model: str | None = None,
    unified_tools: Sequence[JsonObject] | None = None,
    suggested_questions: Sequence[str] | None = None,
    meta: JsonObject | None = None,
) -> Call[Agent]:
    body = _agent_fields(
        name=name,
        description=description,
        system_prompt=system_prompt,
        llm_model=llm_model,
        unified_tools=unified_tools,
        suggested_questions=suggested_questions,
        meta=meta,
    )
    return Call("PATCH", f"/agents/{segment(agent_id)}", _model(Agent), json=body)


def delete_agent(agent_id: AgentId) -> Call[None]:
    return Call("DELETE", f"/agents/{segment(agent_id)}", _nothing)


def publish_agent(agent_id: AgentId) -> Call[Agent]:
    return Call("POST", f"/agents/{segment(agent_id)}/publish", _model(Agent))


# -- knowledge bases [ext] -----------------------------------------------------------------------


def _kb_path(knowledge_base_id: Id) -> str:
    return f"/knowledge-bases/{segment(knowledge_base_id)}"


def create_knowledge_base(*, name: str, description: str | None = None) -> Call[KnowledgeBase]:
    body = _body(name=name, description=description)
    return Call("POST", "/knowledge-bases", _model(KnowledgeBase), json=body)


def list_knowledge_bases(
    *, limit: int = DEFAULT_LIMIT, offset: int = 0
) -> Call[Page[KnowledgeBase]]:
    return Call("GET", "/knowledge-bases", _page(KnowledgeBase), params=_paging(limit, offset))


def get_knowledge_base(knowledge_base_id: Id) -> Call[KnowledgeBase]:
    return Call("GET", _kb_path(knowledge_base_id), _model(KnowledgeBase))


def update_knowledge_base(
    knowledge_base_id: Id, *, name: str | None = None, description: str | None = None
) -> Call[KnowledgeBase]:
    body = _body(name=name, description=description)
    return Call("PATCH", _kb_path(knowledge_base_id), _model(KnowledgeBase), json=body)


def delete_knowledge_base(knowledge_base_id: Id) -> Call[None]:
    return Call("DELETE", _kb_path(knowledge_base_id), _nothing)


def search_knowledge_base(
    knowledge_base_id: Id, *, query: str, top_k: int = 5
) -> Call[list[SearchHit]]:
    body: JsonBody = {"query": query, "top_k": top_k}
    return Call("POST", _kb_path(knowledge_base_id) + "/search", _list(SearchHit), json=body)


def add_text_document(
    knowledge_base_id: Id, *, text: str, title: str | None = None
) -> Call[Document]:
    path = _kb_path(knowledge_base_id) + "/documents"
    return Call("POST", path, _model(Document), json=_body(title=title, text=text))


def upload_document(
    knowledge_base_id: Id, part: FilePart, *, title: str | None = None
) -> Call[Document]:
    path = _kb_path(knowledge_base_id) + "/documents"
    form = {"title": title} if title is not None else None
    return Call("POST", path, _model(Document), files={"file": part}, form=form)


def list_documents(
    knowledge_base_id: Id, *, limit: int = DEFAULT_LIMIT, offset: int = 0
) -> Call[Page[Document]]:
    path = _kb_path(knowledge_base_id) + "/documents"
    return Call("GET", path, _page(Document), params=_paging(limit, offset))


def _document_path(knowledge_base_id: Id, document_id: Id) -> str:
    return f"{_kb_path(knowledge_base_id)}/documents/{segment(document_id)}"


def get_document(knowledge_base_id: Id, document_id: Id) -> Call[Document]:
    return Call("GET", _document_path(knowledge_base_id, document_id), _model(Document))


def delete_document(knowledge_base_id: Id, document_id: Id) -> Call[None]:
    return Call("DELETE", _document_path(knowledge_base_id, document_id), _nothing)


# -- batches -------------------------------------------------------------------------------------


def _batch_request(request: BatchRequest) -> JsonValue:
    item: dict[str, JsonValue] = {"custom_id": request["custom_id"], "message": request["message"]}
    if "agent_id" in request:
        item["agent_id"] = str(request["agent_id"])
    if "external_user_id" in request:
        item["external_user_id"] = request["external_user_id"]
    if "name" in request:
        item["name"] = request["name"]
    if "attached_file_uuids" in request:
        item["attached_file_uuids"] = [str(uuid) for uuid in request["attached_file_uuids"]]
    if "history_id" in request:
        item["history_id"] = request["history_id"]
    return item


def _batch_webhook(webhook: BatchWebhook) -> JsonValue:
    hook: dict[str, JsonValue] = {"url": webhook["url"]}
    if "events" in webhook:
        hook["events"] = list(webhook["events"])
    if "secret" in webhook:
        hook["secret"] = webhook["secret"]
    return hook


def create_batch(
    *,
    agent_id: AgentId,
    requests: Sequence[BatchRequest],
    webhook: BatchWebhook | None = None,
    idempotency_key: str | None = None,
) -> Call[Batch]:
    body = _body(
        agent_id=str(agent_id),
        requests=[_batch_request(request) for request in requests],
        webhook=_batch_webhook(webhook) if webhook is not None else None,
    )
    headers = _idempotent(idempotency_key)
    return Call("POST", "/batches", _model(Batch), json=body, headers=headers)


def list_batches(*, limit: int = DEFAULT_LIMIT, offset: int = 0) -> Call[Page[Batch]]:
    return Call("GET", "/batches", _page(Batch), params=_paging(limit, offset))


def get_batch(batch_id: Id) -> Call[Batch]:
    return Call("GET", f"/batches/{segment(batch_id)}", _model(Batch))


def batch_results(
    batch_id: Id, *, limit: int = DEFAULT_LIMIT, offset: int = 0
) -> Call[Page[BatchItemResult]]:
    path = f"/batches/{segment(batch_id)}/results"
    return Call("GET", path, _page(BatchItemResult), params=_paging(limit, offset))


def cancel_batch(batch_id: Id) -> Call[Batch]:
    return Call("POST", f"/batches/{segment(batch_id)}/cancel", _model(Batch))
