"""Time to `response.created` and to the first delta, over the built-in model on loopback.

Starts a real `kaiwa serve` on a fresh SQLite data directory, then sends N streaming messages one
after another (each on a new chat, so every turn also generates a title) and reports the median and
p99 of the time from sending the request to receiving each event.

    python bench/latency.py --requests 100
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from kaiwa.protocol import SSEDecoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "KAIWA_DATA_DIR": data_dir}
        port = _free_port()
        init = subprocess.run(
            [sys.executable, "-m", "kaiwa.cli", "init", "--json"],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        )
        boot = json.loads(init.stdout)
        server = subprocess.Popen(
            [sys.executable, "-m", "kaiwa.cli", "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base)
            created, first_delta = _measure(base, boot["api_key"], boot["agent_id"], args.requests)
        finally:
            server.terminate()
            server.wait(timeout=15)
    _report("response.created", created)
    _report("first delta", first_delta)


def _measure(base: str, key: str, agent: str, n: int) -> tuple[list[float], list[float]]:
    created: list[float] = []
    first_delta: list[float] = []
    headers = {"x-api-key": key}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for i in range(n + 5):  # the first 5 warm the server up and are not counted
            chat = client.post("/api/v1/chats", json={"name": "bench", "agent_id": agent}).json()
            body = {"message": f"営業時間は何時ですか? ({i})", "agent_id": agent}
            decoder = SSEDecoder()
            t_created = t_delta = None
            start = time.perf_counter()
            with client.stream("POST", f"/api/v1/chats/{chat['data']['id']}/messages", json=body) as r:
                for chunk in r.iter_raw():
                    for event in decoder.decode(chunk):
                        now = time.perf_counter()
                        if event.event == "response.created" and t_created is None:
                            t_created = now - start
                        elif event.event == "response.output_text.delta" and t_delta is None:
                            t_delta = now - start
            if i >= 5 and t_created is not None and t_delta is not None:
                created.append(t_created * 1000)
                first_delta.append(t_delta * 1000)
    return created, first_delta


def _report(name: str, values: list[float]) -> None:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    print(f"{name:<18} n={len(values)}  median {statistics.median(values):6.2f} ms   p99 {p99:6.2f} ms")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"kaiwa did not start at {base}")


if __name__ == "__main__":
    main()
