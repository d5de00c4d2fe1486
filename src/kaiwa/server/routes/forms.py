"""Forms: submit the values a paused answer asked for; the turn goes on as a new response."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import Response

from kaiwa.runtime.forms import FormSubmission
from kaiwa.server.deps import CallerDep, ServicesDep
from kaiwa.server.routes.messages import reply
from kaiwa.server.routes.params import ChatId
from kaiwa.server.schemas import SubmitForm

router = APIRouter(prefix="/api/v1/chats/{chat_id}", tags=["forms"])


@router.post("/form-requests/{form_request_id}/submit")
async def submit_form(
    chat_id: ChatId,
    form_request_id: UUID,
    body: SubmitForm,
    caller: CallerDep,
    services: ServicesDep,
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
    )
    return await reply(services, caller, lambda: services.runtime.submit_form(submission), body)
