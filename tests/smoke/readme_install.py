"""Smoke test of the README's install: run by `.ci/run` with the Python of a virtualenv made by
the README's first command, literally (no lock, today's versions of what pyproject.toml declares).

It starts `kaiwa serve` on a free loopback port with a fresh data directory, indexes an HTML, a
PDF and a DOCX document, streams one answer whose agent searches that knowledge base and fetches
an HTML page from a loopback web server, and checks every part worked. Only the server extra and
the standard library are used, so a parser that cannot import on such an install fails here.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install '.[server]'
    /tmp/v/bin/python tests/smoke/readme_install.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.unit.knowledge.documents import docx_bytes, pdf_bytes

PAGE = (
    b"<!doctype html><html><head><title>Lighthouse lenses</title></head><body><article>"
    b"<h1>Lighthouse lenses</h1><p>The Fresnel lens bends light with concentric rings, so a "
    b"lighthouse lamp can be seen from more than twenty nautical miles away.</p>"
    b"<p>Augustin Fresnel presented the design in 1822.</p></article></body></html>"
)
DOCUMENTS = [
    (
        "shipping.html",
        b"<html><head><title>Shipping</title></head><body><p>We ship every order within two "
        b"business days.</p></body></html>",
        "text/html",
    ),
    ("prices.pdf", pdf_bytes(["月額2,480円です。"], title="料金プラン"), "application/pdf"),
    (
        "points.docx",
        docx_bytes(["100円ごとに1ポイント貯まります。"], heading="ポイント"),
        "application/octet-stream",
    ),
]
DEADLINE = 60.0


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _check(condition: object, what: str) -> None:
    if not condition:
        raise SystemExit(f"readme install smoke test: {what}")


def _events(raw: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[len("data: ") :]) for line in raw.splitlines() if line.startswith("data: {")
    ]


def _run(base: str, key: str, page_url: str) -> None:
    client = httpx.Client(base_url=base, headers={"x-api-key": key}, timeout=30)
    kb = client.post("/api/v1/knowledge-bases", json={"name": "smoke"}).json()["data"]
    documents = []
    for name, content, content_type in DOCUMENTS:
        response = client.post(
            f"/api/v1/knowledge-bases/{kb['id']}/documents",
            files={"file": (name, content, content_type)},
        )
        _check(response.status_code == 202, f"upload {name}: {response.text}")
        documents.append(response.json()["data"]["id"])
    deadline = time.monotonic() + DEADLINE
    for document_id in documents:
        while True:
            path = f"/api/v1/knowledge-bases/{kb['id']}/documents/{document_id}"
            document = client.get(path).json()["data"]
            if document["status"] != "processing" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        _check(document["status"] == "ready", f"index {document['source']}: {document}")
        _check(document["chunk_count"] >= 1, f"index {document['source']}: no chunk")
    print("indexed: " + ", ".join(name for name, _, _ in DOCUMENTS))

    tools = [
        {"type": "knowledge_base", "knowledge_base_ids": [kb["id"]]},
        {"type": "fetch_web_content"},
    ]
    agent = client.post(
        "/api/v1/agents",
        json={"name": "smoke", "llm_model": "builtin/extractive", "unified_tools": tools},
    ).json()["data"]
    client.post(f"/api/v1/agents/{agent['id']}/publish")
    chat = client.post("/api/v1/chats", json={"name": "smoke", "agent_id": agent["id"]}).json()
    question = f"What does {page_url} say about the Fresnel lens?"
    with client.stream(
        "POST",
        f"/api/v1/chats/{chat['data']['id']}/messages",
        json={"message": question, "agent_id": agent["id"]},
    ) as response:
        _check(response.status_code == 200, f"stream: {response.status_code}")
        raw = "".join(response.iter_text())
    _check(raw.rstrip().endswith("data: [DONE]"), f"stream did not end with [DONE]: {raw[-300:]}")
    events = _events(raw)
    ends = [e["step"] for e in events if e["type"] == "response.reasoning_step.end"]
    fetched = [s for s in ends if s["type"] == "consultant_fetch_web_content"]
    _check(fetched and fetched[0]["result"]["success"], f"fetch step failed: {fetched}")
    _check(fetched[0]["result"]["data"]["title"] == "Lighthouse lenses", f"fetch: {fetched}")
    completed = [e for e in events if e["type"] == "response.output_text.completed"]
    _check(completed and "Fresnel" in completed[0]["final_text"], f"answer: {completed}")
    print(f"streamed one answer ({len(events)} events), fetched {page_url}")


def main() -> None:
    kaiwa = Path(sys.executable).with_name("kaiwa")
    page = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    page_url = f"http://127.0.0.1:{page.server_address[1]}/lenses"
    port = _free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "KAIWA_DATA_DIR": data_dir,
            "KAIWA_FETCH_ALLOW_PRIVATE": "127.0.0.1",
        }
        init = subprocess.run(
            [kaiwa, "init", "--json"], env=env, cwd=data_dir, capture_output=True, text=True
        )
        _check(init.returncode == 0, f"kaiwa init: {init.stderr}")
        key = json.loads(init.stdout.strip().splitlines()[-1])["api_key"]
        log = Path(data_dir, "serve.log")
        server = subprocess.Popen(
            [kaiwa, "serve", "--port", str(port)],
            env=env,
            cwd=data_dir,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + DEADLINE
            while True:
                _check(server.poll() is None, f"kaiwa serve exited: {log.read_text()}")
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                _check(time.monotonic() < deadline, "kaiwa serve did not start")
                time.sleep(0.1)
            _run(base, key, page_url)
        except BaseException:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            page.shutdown()
    print("readme install smoke test: passed")


if __name__ == "__main__":
    main()
