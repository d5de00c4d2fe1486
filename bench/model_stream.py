"""CPU per chunk of reading a model's stream: the OpenAI SDK's own stream against kaiwa's provider.

    python bench/model_stream.py                  # 20 streams of 2,000 chunks, 3 rounds
    python bench/model_stream.py --streams 50 --chunks 1000

Starts `fake_model.py` on a free loopback port (stopped at the end) and reads, in this process,
`--streams` concurrent streams of `--chunks` content chunks each, paced at 2,000 chunks a second
per stream (so most reads carry one chunk, as in a real answer), four ways:

* `sdk/httpx2`: `client.post(..., stream_cls=AsyncStream[object])` on the SDK's default
  transport — the SDK's SSE layers and `json.loads`, chunks as dicts (kaiwa's way before);
* `sdk/aiohttp`: the same on the SDK's aiohttp transport (`openai.DefaultAioHttpClient`);
* `kaiwa/httpx2`: `OpenAIModel.stream` with the SDK's default transport;
* `kaiwa/aiohttp`: `OpenAIModel.stream` as it runs in kaiwa (`DataDecoder`, pydantic-core).

Reports the process's CPU time per chunk (median of `--rounds`), on uvloop as `kaiwa serve` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
from collections.abc import Awaitable, Callable

import openai
import uvloop

sys.path.insert(0, os.path.dirname(__file__))
import run

import kaiwa.llm.openai as provider
from kaiwa.config import ProviderSettings
from kaiwa.llm import ChatMessage, ModelRequest, TextDelta


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sdk_stream(client: openai.AsyncOpenAI, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "x"}], "stream": True}
    stream = await client.post(
        "/chat/completions",
        body=body,
        cast_to=object,
        stream=True,
        stream_cls=openai.AsyncStream[object],
    )
    return sum([1 async for _ in stream])


async def kaiwa_stream(chat: provider.OpenAIModel, _: str) -> int:
    request = ModelRequest(messages=[ChatMessage("user", "x")])
    return sum([1 async for event in chat.stream(request) if isinstance(event, TextDelta)])


async def measure(args: argparse.Namespace) -> None:
    with run.bench_server("fake_model.py") as (url, _):
        model = f"bench-ttft0-tps2000-n{args.chunks}"
        settings = ProviderSettings(type="openai", base_url=url, api_key="x")
        aiohttp_model = provider.OpenAIModel("fake", model, settings)
        httpx2_model = provider.OpenAIModel("fake", model, settings)
        httpx2_model._client = openai.AsyncOpenAI(base_url=url, api_key="x")
        sdk_httpx2 = openai.AsyncOpenAI(base_url=url, api_key="x")
        sdk_aiohttp = openai.AsyncOpenAI(
            base_url=url, api_key="x", http_client=openai.DefaultAioHttpClient()
        )
        ways: dict[str, Callable[[str], Awaitable[int]]] = {
            "sdk/httpx2": lambda m: sdk_stream(sdk_httpx2, m),
            "sdk/aiohttp": lambda m: sdk_stream(sdk_aiohttp, m),
            "kaiwa/httpx2": lambda m: kaiwa_stream(httpx2_model, m),
            "kaiwa/aiohttp": lambda m: kaiwa_stream(aiohttp_model, m),
        }
        results: dict[str, list[float]] = {name: [] for name in ways}
        try:
            for round_ in range(args.rounds + 1):  # the first round warms up
                for name, read in ways.items():
                    start = cpu()
                    chunks = await asyncio.gather(*(read(model) for _ in range(args.streams)))
                    if round_:
                        results[name].append((cpu() - start) / sum(chunks) * 1e6)
        finally:
            for client in (sdk_httpx2, sdk_aiohttp):
                await client.close()
            for chat in (aiohttp_model, httpx2_model):
                await chat.aclose()
    base = statistics.median(results["sdk/httpx2"])
    print(f"{args.streams} streams × {args.chunks} chunks, {args.rounds} rounds, CPU per chunk:")
    for name, values in results.items():
        median = statistics.median(values)
        spread = f"{min(values):.1f}–{max(values):.1f}"
        print(f"  {name:<14} {median:5.1f} µs ({spread})  {median / base:.2f} × sdk/httpx2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    uvloop.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
