"""The bytes of a stream, read from a plain socket: headers, pings, `[DONE]`, and the close.

The server runs with a short ping interval, and the agent on the `scripted` model waits a moment
before and in the middle of its answer, so that keep-alives have to fill the silences.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from kaiwa.protocol.sse import SSEDecoder

PING_INTERVAL = 0.1
PAUSE = 0.6
SCRIPT = {
    "answer": [{"delay": PAUSE}, {"text": "前半"}, {"delay": PAUSE}, {"text": "後半です。"}],
    "title": "配線テスト",
}
PING = b": ping\n"
DONE = b"data: [DONE]\n\n"


@pytest.fixture(scope="module")
def server(kaiwa_launcher: Any) -> Iterator[Any]:
    server = kaiwa_launcher.start("wire", env={"KAIWA_PING_INTERVAL": str(PING_INTERVAL)})
    agent = server.create_agent(
        name="wire", llm_model="scripted/wire", meta={"model_settings": {"script": SCRIPT}}
    )
    server.agent_id = agent["id"]
    try:
        yield server
    finally:
        server.stop()


@dataclass
class RawReply:
    status_line: str
    headers: dict[str, list[str]]
    """Lower-case names, every value in the order received."""
    body: bytes
    """De-chunked."""
    first_body_after: float
    """Seconds from sending the request to the first body bytes."""
    terminated: bool
    """The chunked body ended with its zero-length chunk."""
    closed: bool
    """The server closed the connection (the socket read end-of-file)."""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name, [])
        assert len(values) <= 1, f"header {name} sent {len(values)} times: {values}"
        return values[0] if values else None


def raw_post(
    server: Any, path: str, body: dict[str, Any], headers: dict[str, str], deadline: float = 20.0
) -> RawReply:
    """One HTTP/1.1 request over a bare socket, read until the server closes it (bounded)."""
    payload = json.dumps(body).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    received = b""
    first_body_after = -1.0
    closed = False
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.settimeout(5)
        started = time.monotonic()
        sock.sendall(request)
        while time.monotonic() - started < deadline:
            piece = sock.recv(65536)
            if not piece:
                closed = True
                break
            received += piece
            _, blank, body_so_far = received.partition(b"\r\n\r\n")
            if first_body_after < 0 and blank and body_so_far:
                first_body_after = time.monotonic() - started
    header_block, _, chunked = received.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    headers_out: dict[str, list[str]] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers_out.setdefault(name.lower(), []).append(value.strip())
    assert headers_out.get("transfer-encoding") == ["chunked"], headers_out
    decoded, terminated = _dechunk(chunked)
    return RawReply(status_line, headers_out, decoded, first_body_after, terminated, closed)


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    body = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body, data == b"\r\n"
        body += data[:size]
        assert data[size : size + 2] == b"\r\n"
        data = data[size + 2 :]
    return body, False


@pytest.fixture(scope="module")
def reply(server: Any) -> RawReply:
    """One streamed answer, read from a socket by a client that asks for gzip and a close."""
    chat = server.create_chat("wire")
    return raw_post(
        server,
        f"/api/v1/chats/{chat['id']}/messages",
        {"message": "配線を確認してください", "agent_id": server.agent_id, "stream": True},
        {
            "x-api-key": server.api_key,
            "Accept": "text/event-stream",
            "Accept-Encoding": "gzip, deflate, br",
            "Connection": "close",
        },
    )


def test_stream_bytes_headers_pings_and_done(reply: RawReply) -> None:
    assert reply.status_line == "HTTP/1.1 200 OK"
    assert reply.header("content-type") == "text/event-stream; charset=utf-8"
    assert reply.header("cache-control") == "no-cache"
    assert reply.header("x-accel-buffering") == "no"
    assert reply.header("content-encoding") is None
    assert reply.header("x-kaiwa-response-id")

    # The first bytes are a keep-alive, sent at once even though the model is silent for a while.
    assert reply.body.startswith(PING), reply.body[:100]
    assert 0 <= reply.first_body_after < PAUSE * 0.7, reply.first_body_after

    # Keep-alives fill the silence in the middle of the answer.
    text = reply.body.decode("utf-8")
    middle = text[text.index('"delta":"前半"') : text.index('"delta":"後半です。"')]
    assert middle.count(": ping\n") >= 2, middle

    # The end: [DONE] and its blank line are the last bytes, then the chunked body ends and the
    # server closes the connection.
    assert reply.body.endswith(b'"status":"completed"}\n\n' + DONE), reply.body[-300:]
    assert reply.body.count(DONE) == 1
    assert reply.terminated
    assert reply.closed


def test_every_blank_line_of_a_stream_ends_an_event_with_data(reply: RawReply) -> None:
    # Clients such as fetch-event-source hand each blank line to the application as a message:
    # a blank line after a keep-alive would reach it as an empty one, which it cannot parse.
    text = reply.body.decode("utf-8")
    assert "\r" not in text
    *blocks, rest = text.split("\n\n")
    assert rest == "", text[-200:]
    pings = 0
    for block in blocks:
        lines = block.split("\n")
        pings += lines.count(": ping")
        fields = [line for line in lines if not line.startswith(":")]
        assert fields, f"a blank line ended a block of comments only: {block!r}"
        assert [line for line in fields if line.startswith("data: ")], block
        assert all(line.startswith(("id: ", "event: ", "data: ")) for line in fields), block
    assert pings >= 4, text  # the silences were filled, each ping before a frame
    assert blocks[-1].split("\n")[-1] == "data: [DONE]"


def test_a_ping_then_done_is_read_as_done_alone(server: Any, reply: RawReply) -> None:
    """A reader resuming after the end gets a keep-alive and `[DONE]`, with no empty event."""
    response_id = reply.header("x-kaiwa-response-id")
    chat_id = json.loads(reply.body.split(b"data: ", 2)[1].split(b"\n", 1)[0])["chat_id"]
    last_id = reply.body.rsplit(b"\nid: ", 1)[1].split(b"\n", 1)[0].decode()
    again = server.client.get(
        f"/api/v1/chats/{chat_id}/responses/{response_id}/events",
        headers={"x-api-key": server.api_key, "Last-Event-ID": last_id},
    )
    assert again.status_code == 200
    assert again.content == PING + DONE
    decoder = SSEDecoder()
    assert [event.data for event in decoder.decode(again.content)] == ["[DONE]"]
    assert decoder.flush() == []


def test_stream_connection_header_agrees_with_the_clients_close(reply: RawReply) -> None:
    assert reply.headers.get("connection") == ["close"]


def test_stream_on_a_kept_alive_connection_ends_after_done(server: Any) -> None:
    chat = server.create_chat("wire keep-alive")
    body = {"message": "もう一度", "agent_id": server.agent_id, "stream": True}
    headers = {"x-api-key": server.api_key, "accept-encoding": "gzip"}
    timeout = httpx.Timeout(5.0, read=5.0)
    with httpx.Client(base_url=server.base_url, timeout=timeout, trust_env=False) as client:
        with client.stream(
            "POST", f"/api/v1/chats/{chat['id']}/messages", json=body, headers=headers
        ) as response:
            assert response.headers.get("content-encoding") is None
            pieces = list(response.iter_raw())
            ended = time.monotonic()
        raw = b"".join(pieces)
        assert raw.startswith(PING)
        assert raw.endswith(DONE)
        # The body ended right after [DONE]: the client was not left waiting on an open stream.
        assert pieces[-1].endswith(DONE)
        assert time.monotonic() - ended < 1.0
        # The connection is still good for the next request.
        again = client.get("/healthz")
        assert again.status_code == 200
