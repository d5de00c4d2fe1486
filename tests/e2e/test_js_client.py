"""The JavaScript client (`clients/js`, npm `kaiwa-client`) against a real `kaiwa serve` process.

Its tests are `node --test` files in `clients/js/test/`: the decoder, state and error tables and a
scripted loopback server need nothing, the `server-*.test.js` files need the kaiwa server this
module starts. It creates what they use — scripted agents (long, slow, quick, failing, form), a
chat-scope key, two `CuttingProxy`s that cut the first stream through them after a set number of
bytes — and passes it all in environment variables:

    KAIWA_URL, KAIWA_API_KEY, KAIWA_CHAT_KEY, KAIWA_AGENT_ID (the demo agent),
    KAIWA_LONG_AGENT_ID, KAIWA_SLOW_AGENT_ID, KAIWA_QUICK_AGENT_ID, KAIWA_FAILING_AGENT_ID,
    KAIWA_FORM_AGENT_ID (asks for a form, then thanks), KAIWA_PAUSE_AGENT_ID (silent twice),
    KAIWA_PROXY_URL (resume), KAIWA_GIVEUP_PROXY_URL (every reconnection cut too)

Node's report is printed when the suite fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.tcp_proxy import CuttingProxy

NODE = shutil.which("node") or "/usr/bin/node"
JS_ROOT = Path(__file__).resolve().parents[2] / "clients" / "js"
PIECES = [f"{n}番目の文です。" for n in range(1, 31)]
LONG_SCRIPT = {
    "answer": [item for piece in PIECES for item in ({"text": piece}, {"delay": 0.05})],
    "title": "再開の確認",
}
QUICK_SCRIPT = {"answer": [{"text": "短い"}, {"text": "答えです。"}], "title": "短い"}
SLOW_SCRIPT = {"answer": [{"text": "最初の部分。"}, *[{"delay": 0.5}] * 20, {"text": "届かない"}]}
PAUSE_SCRIPT = {
    "answer": [{"delay": 0.5}, {"text": "前半"}, {"delay": 0.5}, {"text": "後半です。"}]
}
FAILING_SCRIPT = {"answer": [{"text": "途中まで"}, {"delay": 0.05}, {"fail": "boom"}]}
FORM_TOOL = {
    "type": "request_form",
    "custom_form_schema": {
        "title": "申し込み",
        "fields": [
            {"name": "name", "label": "お名前", "type": "shortText", "required": True},
            {
                "name": "plan",
                "label": "プラン",
                "type": "dropdown",
                "required": True,
                "options": [{"value": "free", "label": "Free"}, {"value": "pro", "label": "Pro"}],
            },
        ],
    },
}
FORM_SCRIPT = {
    "rounds": [
        [
            {"text": "先にフォームを。"},
            {"tool_call": {"id": "call_1", "name": "request_form", "arguments": {}}},
        ],
        [{"text": "ありがとうございます。"}],
    ]
}
# Past the headers, the first ping and response.created (with its resume token), a few deltas
# in, and not on a frame's boundary.
CUT_AFTER = 1_999
NODE_TIMEOUT = 200.0


def scripted(
    server: Any, name: str, script: dict[str, Any], tools: list[dict[str, Any]] | None = None
) -> str:
    agent = server.create_agent(
        name=name,
        llm_model="scripted/x",
        unified_tools=tools or [],
        meta={"model_settings": {"script": script}},
    )
    return str(agent["id"])


@pytest.fixture(scope="module")
def server(kaiwa_launcher: Any) -> Iterator[Any]:
    server = kaiwa_launcher.start("js-client", env={"KAIWA_PING_INTERVAL": "0.2"})
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(NODE_TIMEOUT + 30)
def test_the_js_client_suite_passes_against_a_real_server(server: Any) -> None:
    chat_key = json.loads(server.cli("keys", "create", "--scope", "chat", "--json").stdout)
    with (
        CuttingProxy(server.port, cut_after=CUT_AFTER) as proxy,
        CuttingProxy(server.port, cut_after=CUT_AFTER) as giveup_proxy,
    ):
        env = {
            "PATH": "/usr/bin:/bin",
            "NO_PROXY": "*",
            "KAIWA_URL": server.base_url,
            "KAIWA_API_KEY": server.api_key,
            "KAIWA_CHAT_KEY": chat_key["api_key"],
            "KAIWA_AGENT_ID": server.agent_id,
            "KAIWA_LONG_AGENT_ID": scripted(server, "long", LONG_SCRIPT),
            "KAIWA_SLOW_AGENT_ID": scripted(server, "slow", SLOW_SCRIPT),
            "KAIWA_QUICK_AGENT_ID": scripted(server, "quick", QUICK_SCRIPT),
            "KAIWA_FAILING_AGENT_ID": scripted(server, "failing", FAILING_SCRIPT),
            "KAIWA_FORM_AGENT_ID": scripted(server, "form", FORM_SCRIPT, [FORM_TOOL]),
            "KAIWA_PAUSE_AGENT_ID": scripted(server, "pause", PAUSE_SCRIPT),
            "KAIWA_PROXY_URL": f"http://127.0.0.1:{proxy.port}",
            "KAIWA_GIVEUP_PROXY_URL": f"http://127.0.0.1:{giveup_proxy.port}",
        }
        result = subprocess.run(
            [NODE, "--test", "--test-reporter=spec", "test/"],
            cwd=JS_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            check=False,
        )
        report = f"node --test exited with {result.returncode}\n{result.stdout}\n{result.stderr}"
        print(report)  # shown by pytest with -rP, or on failure
        assert result.returncode == 0, report
        assert proxy.cut.is_set(), "the resume test's stream ended before the proxy cut it"
        assert giveup_proxy.cut.is_set(), "the give-up test's stream was never cut"
    assert "# fail 0" in result.stdout or "ℹ fail 0" in result.stdout, report
