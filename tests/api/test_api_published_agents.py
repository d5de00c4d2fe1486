"""`GET /chats/published-agents`: published agents only, as their published snapshot."""

from __future__ import annotations

from api_support import Api, data, envelope


async def test_only_agents_with_a_published_version_are_listed(api: Api) -> None:
    draft = await api.create_agent(name="draft", publish=False)
    published = await api.create_agent(name="published")
    response = await api.get("/api/v1/chats/published-agents")
    listed = data(response)
    assert envelope(response)["pagination"] is None
    ids = [agent["id"] for agent in listed]
    assert ids == [api.demo_agent_id, published["id"]]
    assert draft["id"] not in ids
    assert all(agent["publish_state"] == "public" for agent in listed)


async def test_listing_shows_the_published_snapshot_until_republished(api: Api) -> None:
    agent = await api.create_agent(
        name="v1 name", system_prompt="v1 prompt", suggested_questions=["q1"]
    )
    patched = data(
        await api.patch(
            f"/api/v1/agents/{agent['id']}",
            json={"name": "v2 name", "system_prompt": "v2 prompt"},
        )
    )
    assert patched["name"] == "v2 name"

    def find(agents: list[dict[str, object]]) -> dict[str, object]:
        return next(a for a in agents if a["id"] == agent["id"])

    shown = find(data(await api.get("/api/v1/chats/published-agents")))
    assert shown["name"] == "v1 name"
    assert shown["system_prompt"] == "v1 prompt"
    assert shown["suggested_questions"] == ["q1"]
    assert shown["published_version"] == 1

    data(await api.post(f"/api/v1/agents/{agent['id']}/publish"))
    shown = find(data(await api.get("/api/v1/chats/published-agents")))
    assert shown["name"] == "v2 name"
    assert shown["system_prompt"] == "v2 prompt"
    assert shown["published_version"] == 2
