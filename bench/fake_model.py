"""A lean fake OpenAI-compatible model for load benchmarks, on loopback.

    python bench/fake_model.py --port 8911 --ttft 0.2 --tps 20 --tokens 100

`POST /v1/chat/completions` with `stream: true` answers as OpenAI does: `data: {chunk}` lines, a
usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`. The first content
delta is sent `--ttft` seconds after the request, the next ones at `--tps` per second on a fixed
schedule (a late token does not push the later ones back). Each delta's text is the wall-clock
time of its emission, `<t=1732412345.123456>`, so a reader at the other end of any relay can
compute the latency that relay added without the relay doing anything special.

A request's model name may override the defaults: `ttft0.2-tps200-n50` (any subset, any order).
With `hold<tag>` in the name (`bench-holdc3-tps20-n60`), the stream sends its role chunk and
waits until `POST /hold/<tag>` releases every stream of that tag at once; its schedule (TTFT,
then the tokens) starts at the release plus a random fraction of the interval between tokens
(streams released together, but not in lockstep). `GET /hold/<tag>` answers how many wait.
So a load test can open N streams, however slowly a relay admits them, then have all N stream
together.

Deliberate oddities: a raw asyncio HTTP/1.1 server, not an ASGI app, with chunk bytes built from
pre-encoded templates, so 1,000 concurrent streams cost it little CPU next to what it measures.
It understands only what the OpenAI SDK sends: one request line, headers, a `Content-Length` body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, replace

_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)
_PREFIX = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"'
_ROLE = (
    b'","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
)
_DELTA = b'","choices":[{"index":0,"delta":{"content":"<t=%.6f>"},"finish_reason":null}]}\n\n'
_STOP = b'","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
_USAGE = (
    b'","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":%d,"total_tokens":%d}}\n\n'
)
_DONE = b"data: [DONE]\n\n"
_OVERRIDE = re.compile(r"(ttft|tps|n)([0-9.]+)")
_HOLD = re.compile(r"hold([a-z0-9]+)")


class _Hold:
    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.waiting = 0


_holds: dict[str, _Hold] = {}


@dataclass(frozen=True)
class Pace:
    ttft: float
    tps: float
    tokens: int

    def for_model(self, model: str) -> Pace:
        pace = self
        for name, value in _OVERRIDE.findall(model):
            if name == "ttft":
                pace = replace(pace, ttft=float(value))
            elif name == "tps":
                pace = replace(pace, tps=float(value))
            else:
                pace = replace(pace, tokens=int(value))
        return pace


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pace: Pace) -> None:
    try:
        while True:  # keep-alive: one request after another on the connection
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length)) if length else {}
            if head.startswith((b"GET /hold/", b"POST /hold/")):
                method, path = head.split(b" ", 2)[:2]
                hold = _holds.setdefault(path.rsplit(b"/", 1)[1].decode(), _Hold())
                if method == b"POST":
                    hold.released.set()
                answer = str(hold.waiting).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer)
                )
                await writer.drain()
                continue
            if not head.startswith(b"POST /v1/chat/completions") or not body.get("stream"):
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                continue
            await _stream(writer, body, pace)
    except (asyncio.IncompleteReadError, ConnectionError, RuntimeError):
        pass  # RuntimeError: uvloop's, writing to a transport the client closed
    finally:
        writer.close()


async def _stream(writer: asyncio.StreamWriter, body: dict[str, object], pace: Pace) -> None:
    model = str(body.get("model", "bench"))
    pace = pace.for_model(model)
    prefix = _PREFIX + model.encode()
    writer.write(_HEAD + _chunk(prefix + _ROLE))
    await writer.drain()
    held = _HOLD.search(model)
    start = time.monotonic()
    if held:
        hold = _holds.setdefault(held.group(1), _Hold())
        hold.waiting += 1
        await hold.released.wait()
        # Released together, but not in lockstep: each stream's tokens keep their own phase
        # within the interval between two tokens, as if it had started at its own time.
        start = time.monotonic() + random.random() / pace.tps
    for i in range(pace.tokens):
        delay = start + pace.ttft + i / pace.tps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(_chunk(prefix + _DELTA % time.time()))
        if writer.transport.get_write_buffer_size() > 65536:
            await writer.drain()
    tail = _chunk(prefix + _STOP)
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        tail += _chunk(prefix + _USAGE % (pace.tokens, pace.tokens + 10))
    writer.write(tail + _chunk(_DONE) + b"0\r\n\r\n")
    await writer.drain()


async def serve(host: str, port: int, pace: Pace) -> None:
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, pace), host, port, backlog=4096, limit=1 << 20
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8911)
    parser.add_argument("--ttft", type=float, default=0.2, help="seconds to the first token")
    parser.add_argument("--tps", type=float, default=20.0, help="tokens per second")
    parser.add_argument("--tokens", type=int, default=100, help="content deltas per answer")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    runner(serve(args.host, args.port, Pace(args.ttft, args.tps, args.tokens)))


if __name__ == "__main__":
    main()
