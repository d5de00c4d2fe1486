"""The `lookup` tool's search over a chat's earlier messages and attached files."""

from __future__ import annotations

import uuid

from api_support import Api, data
from test_files import other_workspace_key, upload
from tests.unit.files import samples

from kaiwa.files import LookupHit, lookup
from kaiwa.store import files, messages

PRICES = (
    "料金表\n\n"
    "スタンダードプランの月額料金は5,000円です。年払いにすると2か月分が無料になります。\n\n"
    "エンタープライズプランは個別にお見積もりします。"
)
HANDBOOK = (
    "Employee handbook.\n\n"
    "Remote work is allowed three days a week. Expense reports are due on the fifth. "
    "The office closes at 8 pm."
)


async def _file(api: Api, name: str, content: bytes, *, key: str | None = None) -> str:
    file_uuid: str = data(await upload(api, name, content, key=key))["uuid"]
    return file_uuid


async def _message(
    api: Api,
    chat_id: int,
    role: str,
    content: str,
    *,
    status: str = "completed",
    meta: dict[str, object] | None = None,
    attach: tuple[str, ...] = (),
) -> int:
    async with api.store() as session:
        message_id = await messages.insert_message(
            session,
            chat_id=chat_id,
            group_id=f"cvg-{uuid.uuid4()}",
            role=role,
            content=content,
            status=status,
            meta=meta or {},
        )
        if attach:
            found = await files.check_attachable(session, api.workspace_id, attach)
            files.link(session, chat_id=chat_id, message_id=message_id, files=found)
        return message_id


async def _lookup(api: Api, chat_id: int, query: str, **kwargs: object) -> list[LookupHit]:
    async with api.store() as session:
        return await lookup(session, chat_id=chat_id, query=query, **kwargs)  # type: ignore[arg-type]


async def test_lookup_ranks_earlier_messages_and_attached_files_together(api: Api) -> None:
    chat = (await api.create_chat())["id"]
    prices = await _file(api, "料金表.txt", PRICES.encode())
    handbook = await _file(api, "handbook.pdf", samples.pdf(*HANDBOOK.split(". ")))
    await _message(api, chat, "user", "Here are our documents", attach=(prices, handbook))
    answer = await _message(api, chat, "assistant", "The deadline for expense reports is noted.")
    await _message(api, chat, "user", "Thanks, what about parking?")

    hits = await _lookup(api, chat, "スタンダードプランの月額料金はいくら?")
    assert hits[0].source == "file"
    assert hits[0].id == prices
    assert hits[0].title == "料金表.txt"
    assert "5,000円" in hits[0].text
    assert "月額料金" in hits[0].snippet
    assert hits[0].score > 0

    hits = await _lookup(api, chat, "When are expense reports due?")
    assert {(hit.source, hit.id) for hit in hits} >= {("file", handbook), ("message", str(answer))}
    by_id = {hit.id: hit for hit in hits}
    assert by_id[str(answer)].title.startswith("Earlier message (assistant, ")
    assert by_id[str(answer)].title.endswith(" UTC)")
    assert "fifth" in by_id[handbook].text
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


async def test_lookup_leaves_out_the_current_turn_and_answers_that_do_not_stand(api: Api) -> None:
    chat = (await api.create_chat())["id"]
    kept = await _message(api, chat, "user", "My order number is 4471 for the blue kettle")
    await _message(api, chat, "assistant", "kettle draft", status="failed")
    await _message(api, chat, "assistant", "kettle partial", status="in_progress")
    await _message(api, chat, "assistant", "kettle old answer", meta={"superseded": True})
    await _message(api, chat, "system", "kettle system note")
    current = await _message(api, chat, "user", "Which kettle did I order?")

    hits = await _lookup(api, chat, "kettle order", before_message_id=current)
    assert [hit.id for hit in hits] == [str(kept)]
    assert hits[0].title.startswith("Earlier message (user, ")
    everything = await _lookup(api, chat, "kettle order")
    assert {hit.id for hit in everything} == {str(kept), str(current)}


async def test_lookup_searches_this_messages_attachments_before_they_are_linked(api: Api) -> None:
    chat = (await api.create_chat())["id"]
    handbook = await _file(api, "handbook.txt", HANDBOOK.encode())
    hits = await _lookup(api, chat, "remote work days", file_uuids=[handbook])
    assert [hit.id for hit in hits] == [handbook]
    # A file of another workspace is never read, whoever passes its uuid.
    theirs = await _file(
        api, "theirs.txt", b"remote work secrets", key=await other_workspace_key(api)
    )
    hits = await _lookup(api, chat, "remote work secrets", file_uuids=[theirs])
    assert hits == []


async def test_with_no_match_the_beginning_of_this_messages_files_is_returned(api: Api) -> None:
    chat = (await api.create_chat())["id"]
    long_text = "\n\n".join(
        f"Section {n}. " + "Lorem ipsum dolor sit amet. " * 15 for n in range(6)
    )
    first = await _file(api, "long.txt", long_text.encode())
    second = await _file(api, "短い.txt", "これは短いメモです。".encode())
    image = await _file(api, "dot.png", samples.png())
    earlier = await _file(api, "earlier.txt", b"Unrelated earlier file")
    await _message(api, chat, "user", "old", attach=(earlier,))

    hits = await _lookup(api, chat, "要約して", file_uuids=[first, second, image], limit=4)
    assert [hit.id for hit in hits] == [first, second, first, first]
    assert all(hit.score == 0.0 for hit in hits)
    assert hits[0].title == "long.txt (part 1 of " + hits[0].title.split(" of ")[1]
    assert hits[0].text.startswith("Section 0.")
    assert hits[1].text == "これは短いメモです。"
    assert hits[2].title.startswith("long.txt (part 2 of ")
    # Without attachments of its own, a message that matches nothing gets nothing.
    assert await _lookup(api, chat, "要約して") == []


async def test_snippets_are_short_and_show_the_match(api: Api) -> None:
    chat = (await api.create_chat())["id"]
    filler = "This paragraph is about nothing in particular. " * 8
    text = f"{filler}\nThe secret password for the staging server is tangerine.\n{filler}"
    await _message(api, chat, "user", text)
    hits = await _lookup(api, chat, "staging password")
    assert hits
    assert len(hits[0].snippet) <= 202
    assert "password for the staging server" in hits[0].snippet
    assert hits[0].snippet.startswith("…")
    assert "\n" not in hits[0].snippet
