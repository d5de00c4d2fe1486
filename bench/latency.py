"""Time to `response.created` and to the first delta, over the built-in model on loopback.

Starts a real `kaiwa serve` on a fresh SQLite data directory, then sends N streaming messages one
after another (each on a new chat, so every turn also generates a title) and reports the median and
p99 of the time from sending the request to receiving each event.

    python bench/latency.py --requests 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import httpx

from kaiwa.protocol import SSEDecoder

sys.path.insert(0, os.path.dirname(__file__))
from kaiwa_server import running_kaiwa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with running_kaiwa() as kaiwa:
        created, first_delta = _measure(
            kaiwa.base_url, kaiwa.api_key, kaiwa.agent_id, args.requests
        )
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
            with client.stream(
                "POST", f"/api/v1/chats/{chat['data']['id']}/messages", json=body
            ) as r:
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
    median = statistics.median(values)
    print(f"{name:<18} n={len(values)}  median {median:6.2f} ms   p99 {p99:6.2f} ms")


if __name__ == "__main__":
    main()
