"""The guide agent answers each language from its pages in that language, offline and lexical
(the default install has no dense embedder)."""

from __future__ import annotations

import pytest
from api_support import Api

from conftest import MakeApi
from kaiwa.guide import ensure_guide
from kaiwa.llm.text import detect_language


@pytest.fixture
async def guide(make_api: MakeApi) -> tuple[Api, str]:
    api = await make_api(embeddings={"provider": "none"})
    settings = api.app.state.services.settings
    agent = await ensure_guide(api.app.state.sessions, api.workspace_id, settings)
    await api.app.state.jobs.settle(["index"])
    return api, agent.id


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("What is kaiwa?", "What kaiwa is"),
        ("How do I configure a model?", "Configuring a model"),
        ("How do I use an OpenAI-compatible server like Ollama?", "Configuring a model"),
        ("Which tools can an agent use?", "Tools and knowledge bases"),
        ("How do I resume a stream after the connection drops?", "What kaiwa is"),
        ("How do I send a message with the API key?", "Using the API"),
        ("kaiwa とは何ですか?", "kaiwa とは"),
        ("モデルの設定方法は?", "モデルの設定"),
        ("OpenAI 互換サーバーのモデル設定方法は?", "モデルの設定"),
        ("エージェントが使えるツールは?", "ツールとナレッジベース"),
        ("接続が切れたら回答はどうなりますか?", "kaiwa とは"),
        ("API でメッセージを送信するには?", "API の使い方"),
    ],
)
async def test_a_question_is_answered_from_the_guide_in_its_own_language(
    guide: tuple[Api, str], question: str, source: str
) -> None:
    api, agent_id = guide
    chat = await api.create_chat(agent_id)
    stream = await api.stream(chat["id"], question, agent_id=agent_id)
    text = stream.completed.final_text
    language = detect_language(question)
    answer, _, sources = text.rpartition("\n\n")
    assert sources == ("Sources: " if language == "en" else "出典: ") + sources.split(": ", 1)[1]
    assert source in sources.split(": ", 1)[1].split(", ")
    # Every passage quoted is in the question's language.
    quoted = answer.split("\n\n")[1:]
    assert quoted
    assert [detect_language(passage) for passage in quoted] == [language] * len(quoted)


async def test_the_guide_indexes_every_page_in_both_languages(guide: tuple[Api, str]) -> None:
    api, _ = guide
    listed = (await api.get("/api/v1/knowledge-bases")).json()["data"]
    (base,) = [kb for kb in listed if kb["name"] == "kaiwa guide"]
    documents = (await api.get(f"/api/v1/knowledge-bases/{base['id']}/documents")).json()["data"]
    assert all(document["status"] == "ready" for document in documents)
    pages = sorted(document["source"] for document in documents)
    topics = sorted({page.split(".")[0] for page in pages})
    assert pages == sorted(f"{topic}.{lang}.md" for topic in topics for lang in ("en", "ja"))
    assert topics == ["api", "kaiwa-overview", "models", "tools"]
