// The raw bytes of a real kaiwa stream, read with plain `fetch`: every blank line ends an event
// that has a `data:` line. Clients such as fetch-event-source hand each blank line to the
// application as a message, so a blank line after a keep-alive would reach it as an empty message
// (which it fails to parse, and the library then retries the POST, asking twice).
// Started by tests/e2e/test_js_client.py (ping interval 0.2 s, an agent that pauses twice).

import assert from "node:assert/strict";
import { test } from "node:test";

import { KaiwaClient } from "../src/index.js";

const env = process.env;
if (!env.KAIWA_URL) {
  throw new Error("These tests need a kaiwa server: run `pytest tests/e2e/test_js_client.py`");
}

/** The blocks of a stream: the lines between blank lines, and whatever follows the last one. */
function blocks(text) {
  const lines = text.split("\n");
  const ended = [];
  let current = [];
  for (const line of lines.slice(0, -1)) {
    if (line === "") {
      ended.push(current);
      current = [];
    } else {
      current.push(line);
    }
  }
  return { ended, rest: [...current, lines.at(-1)].filter((line) => line !== "") };
}

test("every blank line of a real stream ends an event with data, pings included", async () => {
  const agentId = env.KAIWA_PAUSE_AGENT_ID;
  const client = new KaiwaClient({ baseUrl: env.KAIWA_URL, apiKey: env.KAIWA_API_KEY });
  const chat = await client.chats.create({ name: "wire", agentId });
  const response = await fetch(`${env.KAIWA_URL}/api/v1/chats/${chat.id}/messages`, {
    method: "POST",
    headers: { "x-api-key": env.KAIWA_API_KEY, "content-type": "application/json" },
    body: JSON.stringify({ message: "配線を確認してください", agent_id: agentId, stream: true }),
    signal: AbortSignal.timeout(20_000),
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const text = await response.text();

  assert.ok(text.startsWith(": ping\n"), text.slice(0, 100));
  assert.ok(!text.includes("\r"), "kaiwa ends its lines with LF only");
  const { ended, rest } = blocks(text);
  assert.deepEqual(rest, [], "the stream ends with a blank line");
  const pings = ended.flat().filter((line) => line === ": ping").length;
  assert.ok(pings >= 3, `keep-alives fill the agent's pauses (${pings} seen)`);
  for (const block of ended) {
    const fields = block.filter((line) => !line.startsWith(":"));
    assert.ok(
      fields.some((line) => line.startsWith("data: ")),
      `a blank line ended a block without data: ${JSON.stringify(block)}`,
    );
  }
  assert.deepEqual(
    ended.at(-1).filter((line) => !line.startsWith(":")),
    ["data: [DONE]"],
  );
  const deltas = ended
    .map((block) => block.find((line) => line.startsWith("data: {")))
    .filter(Boolean)
    .map((line) => JSON.parse(line.slice("data: ".length)))
    .filter((event) => event.type === "response.output_text.delta")
    .map((event) => event.delta);
  assert.equal(deltas.join(""), "前半後半です。");
});
