"""The floor: the least a server can do to relay a model's stream as kaiwa-shaped SSE.

    python bench/floor.py --port 8912 --model-url http://127.0.0.1:8911/v1

`POST /api/v1/chats/{chat_id}/messages` with `{"message": ..., "model": ...}` opens the model's
stream with httpx and relays it as kaiwa's frames: `response.created`, one
`response.output_text.delta` per content delta, `response.output_text.completed`, `data: [DONE]`.
No auth, database, event log, agent or access log: what kaiwa costs above this is its own.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from kaiwa.protocol.sse import DONE, encode_frame


def create_app(model_url: str) -> Starlette:
    client = httpx.AsyncClient(
        base_url=model_url,
        timeout=httpx.Timeout(60.0),
        limits=httpx.Limits(max_connections=4096, max_keepalive_connections=4096),
    )

    async def send_message(request: Request) -> StreamingResponse:
        chat_id = int(request.path_params["chat_id"])
        body = await request.json()
        model = str(body.get("model", "bench"))
        payload = {
            "model": model,
            "messages": [{"role": "user", "content": body.get("message", "")}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return StreamingResponse(_relay(client, payload, chat_id), media_type="text/event-stream")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with client:
            yield

    return Starlette(
        routes=[Route("/api/v1/chats/{chat_id}/messages", send_message, methods=["POST"])],
        lifespan=lifespan,
    )


async def _relay(
    client: httpx.AsyncClient, payload: dict[str, object], chat_id: int
) -> AsyncIterator[bytes]:
    response_id = str(uuid.uuid4())
    base = {"response_id": response_id, "chat_id": chat_id}
    created = {"type": "response.created", **base, "agent_id": "floor", "model": "fake/floor"}
    yield encode_frame(0, "response.created", json.dumps(created, separators=(",", ":")))
    event_id = 1
    text: list[str] = []
    usage = {"input_tokens": 0, "output_tokens": 0}
    async with client.stream("POST", "/chat/completions", json=payload) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = {
                    "input_tokens": chunk["usage"]["prompt_tokens"],
                    "output_tokens": chunk["usage"]["completion_tokens"],
                }
            for choice in chunk["choices"]:
                delta = choice["delta"].get("content")
                if delta:
                    text.append(delta)
                    data = {"type": "response.output_text.delta", **base, "delta": delta}
                    yield encode_frame(event_id, "response.output_text.delta", json.dumps(data))
                    event_id += 1
    completed = {
        "type": "response.output_text.completed",
        **base,
        "final_text": "".join(text),
        "usage": usage,
        "status": "completed",
    }
    yield encode_frame(event_id, "response.output_text.completed", json.dumps(completed))
    yield DONE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8912)
    parser.add_argument("--model-url", required=True, help="the model's base URL, ending in /v1")
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.model_url),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
