"""The public surface of `kaiwa.client` is pinned; the sync and async twins cannot drift apart;
importing the client pulls in nothing of the server.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import pytest

import kaiwa.client
from kaiwa.client import (
    AsyncClient,
    AsyncStream,
    Client,
    Stream,
    _async_batches,
    _async_knowledge,
    _async_resources,
    _batches,
    _client,
    _knowledge,
    _resources,
)

PUBLIC = [
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
    "DEFAULT_TIMEOUT",
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
#: Each namespace class, with the modules of its sync and async twins.
NAMESPACES = {
    "Chats": (_resources, _async_resources),
    "Messages": (_resources, _async_resources),
    "Forms": (_resources, _async_resources),
    "Files": (_resources, _async_resources),
    "Feedback": (_resources, _async_resources),
    "Responses": (_resources, _async_resources),
    "Agents": (_resources, _async_resources),
    "KnowledgeBases": (_knowledge, _async_knowledge),
    "Documents": (_knowledge, _async_knowledge),
    "Batches": (_batches, _async_batches),
}


def test_all_is_pinned() -> None:
    assert sorted(kaiwa.client.__all__) == sorted(PUBLIC)
    assert len(set(kaiwa.client.__all__)) == len(kaiwa.client.__all__)


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from kaiwa.client import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(PUBLIC)


def test_importing_the_client_loads_no_server_module() -> None:
    code = (
        "import sys, kaiwa.client\n"
        "c = kaiwa.client.Client(base_url='http://127.0.0.1:1', api_key='k'); c.close()\n"
        "roots = {'fastapi', 'starlette', 'sqlalchemy', 'uvicorn', 'openai', 'alembic',"
        " 'pydantic_settings'}\n"
        "ours = ('kaiwa.server', 'kaiwa.runtime', 'kaiwa.store', 'kaiwa.llm', 'kaiwa.bus',"
        " 'kaiwa.config', 'kaiwa.cli')\n"
        "bad = sorted(m for m in sys.modules"
        " if m.split('.')[0] in roots or m in ours or m.startswith(tuple(o + '.' for o in ours)))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def _shape(signature: inspect.Signature) -> list[tuple[str, object, object, object]]:
    # Names, kinds, defaults and annotations, with the one word that differs between twins.
    def twin(annotation: object) -> object:
        return str(annotation).replace("Async", "").replace("Awaitable", "")

    return [(p.name, p.kind, p.default, twin(p.annotation)) for p in signature.parameters.values()]


@pytest.mark.parametrize("name", NAMESPACES)
def test_each_async_namespace_mirrors_its_sync_twin(name: str) -> None:
    sync_module, async_module = NAMESPACES[name]
    sync = _public_methods(getattr(sync_module, name))
    async_ = _public_methods(getattr(async_module, f"Async{name}"))
    assert sync.keys() == async_.keys()
    for method, signature in sync.items():
        assert _shape(signature) == _shape(async_[method]), method
        twin = str(signature.return_annotation).replace("Iterator", "AsyncIterator")
        twin = twin.replace("Stream", "AsyncStream")
        assert str(async_[method].return_annotation) == twin, method
        is_async = inspect.iscoroutinefunction(
            getattr(getattr(async_module, f"Async{name}"), method)
        )
        returns_iterator = "Iterator" in twin or "Stream" in twin
        assert is_async is not returns_iterator, method


def test_the_clients_mirror_each_other() -> None:
    assert [
        p for p in _shape(inspect.signature(Client)) if p[0] not in ("transport", "http_client")
    ] == [
        p
        for p in _shape(inspect.signature(AsyncClient))
        if p[0] not in ("transport", "http_client")
    ]
    namespaces = {
        "chats",
        "messages",
        "forms",
        "files",
        "feedback",
        "responses",
        "agents",
        "knowledge_bases",
        "batches",
    }
    sync = Client(base_url="http://kaiwa.test", api_key="k")
    async_ = AsyncClient(base_url="http://kaiwa.test", api_key="k")
    assert {n for n in vars(sync) if not n.startswith("_")} >= namespaces
    assert {n for n in vars(sync) if not n.startswith("_")} == {
        n for n in vars(async_) if not n.startswith("_")
    }
    for name in namespaces:
        assert type(getattr(async_, name)).__name__ == "Async" + type(getattr(sync, name)).__name__
    documents = (sync.knowledge_bases.documents, async_.knowledge_bases.documents)
    assert [type(namespace).__name__ for namespace in documents] == ["Documents", "AsyncDocuments"]
    sync.close()


def test_the_streams_mirror_each_other() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(Stream) == public(AsyncStream)
    assert {
        "final_text",
        "cancel",
        "close",
        "response_id",
        "chat_id",
        "state",
        "form_request",
    } <= public(Stream)
    for name in ("final_text", "cancel", "close"):
        assert inspect.iscoroutinefunction(getattr(AsyncStream, name)), name


def _annotations(obj: object) -> list[object]:
    hints = typing.get_type_hints(obj, include_extras=True)
    return list(hints.values())


def _mentions_any(annotation: object) -> bool:
    if annotation is typing.Any:
        return True
    return any(_mentions_any(arg) for arg in typing.get_args(annotation))


def test_no_public_signature_mentions_any() -> None:
    classes = [Client, AsyncClient, Stream, AsyncStream]
    classes += [getattr(sync, name) for name, (sync, _) in NAMESPACES.items()]
    classes += [getattr(async_, f"Async{name}") for name, (_, async_) in NAMESPACES.items()]
    for cls in classes:
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("_") and name != "__init__":
                continue
            # Names imported only for type checking live in the other modules of the package.
            globalns = {**vars(_client), **vars(sys.modules[member.__module__])}
            hints = typing.get_type_hints(member, globalns=globalns)
            offenders = [k for k, v in hints.items() if _mentions_any(v)]
            assert not offenders, f"{cls.__name__}.{name}: {offenders}"
