"""Forms: submit the values a paused answer asked for; the turn goes on as a new response."""

from __future__ import annotations

from functools import partial
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import Response

from kaiwa.runtime.forms import FormSubmission
from kaiwa.server.deps import CallerDep, KeyFirstRoute, ReadSessionsDep, ServicesDep
from kaiwa.server.idempotency import IdempotencyKeyHeader, claim_of
from kaiwa.server.routes.messages import LastEventIdHeader, reply_once
from kaiwa.server.routes.params import ChatId
from kaiwa.server.schemas import SubmitForm

router = APIRouter(prefix="/api/v1/chats/{chat_id}", tags=["forms"], route_class=KeyFirstRoute)


@router.post("/form-requests/{form_request_id}/submit")
async def submit_form(
    chat_id: ChatId,
    form_request_id: UUID,
    body: SubmitForm,
    caller: CallerDep,
    services: ServicesDep,
    read_sessions: ReadSessionsDep,
    idempotency_key: IdempotencyKeyHeader = None,
    last_event_id: LastEventIdHeader = None,
) -> Response:
    """Check the values (400 naming a bad field; 409 when submitted already), then stream the
    rest of the turn — or, with `stream: false`, answer with its final text."""
    submission = FormSubmission(
        workspace_id=caller.workspace_id,
        chat_id=chat_id,
        form_request_id=str(form_request_id),
        values=body.values,
        agent_id=str(body.agent_id) if body.agent_id is not None else None,
        external_user_id=body.external_user_id,
        whitelist_mode=caller.whitelist_mode,
        include_tool_tags=body.include_tool_tags,
        idempotency=claim_of(
            idempotency_key, "submit_form", form_request_id, body, services.settings.idempotency_ttl
        ),
    )
    start = partial(services.runtime.submit_form, submission)
    async with read_sessions() as session:
        return await reply_once(
            services, caller, session, submission.idempotency, start, body, last_event_id
        )
