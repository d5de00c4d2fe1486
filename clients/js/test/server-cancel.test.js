// Stopping an answer on a real kaiwa server: `stream.cancel()`, an aborted `signal`, and the 409
// of a second message while one is running.
// Started by tests/e2e/test_js_client.py, which passes the server and its agents in KAIWA_*.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ConflictError, KaiwaClient } from "../src/index.js";

const env = process.env;
if (!env.KAIWA_URL) {
  throw new Error("These tests need a kaiwa server: run `pytest tests/e2e/test_js_client.py`");
}
const client = new KaiwaClient({ baseUrl: env.KAIWA_URL, apiKey: env.KAIWA_API_KEY });
const agentId = env.KAIWA_SLOW_AGENT_ID;
// The slow agent writes this, then pauses 10 s before the rest.
const FIRST_PART = "最初の部分。";
const TIMEOUT = { timeout: 30_000 };

async function storedAnswer(chatId) {
  const endsAt = Date.now() + 15_000;
  for (;;) {
    const { items } = await client.messages.list(chatId);
    const last = items.filter((m) => m.role === "assistant").at(-1);
    if (last.meta.status !== "in_progress") return last;
    assert.ok(Date.now() < endsAt, "the answer was still running after 15 s");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test(
  "stream.cancel() mid-answer ends the stream with completed, status cancelled",
  TIMEOUT,
  async () => {
    const chat = await client.chats.create({ name: "cancel", agentId });
    const started = performance.now();
    const stream = client.messages.stream(chat.id, { message: "ゆっくり", agentId });
    let status = null;
    const events = [];
    for await (const event of stream) {
      events.push(event);
      if (event.type === "response.output_text.delta" && status === null)
        status = await stream.cancel();
    }

    assert.ok(performance.now() - started < 8000, "the answer was stopped, not waited out");
    assert.equal(status.id, stream.responseId);
    const completed = events.at(-1);
    assert.deepEqual(
      [completed.type, completed.status, completed.final_text],
      ["response.output_text.completed", "cancelled", FIRST_PART],
    );
    assert.equal(await stream.finalText(), FIRST_PART);
    assert.equal(stream.state.status, "cancelled");
    const stored = await storedAnswer(chat.id);
    assert.deepEqual([stored.content, stored.meta.status], [FIRST_PART, "cancelled"]);
    assert.equal((await client.responses.get(chat.id, stream.responseId)).status, "cancelled");
  },
);

test(
  "aborting the signal mid-answer cancels it; the iteration ends after completed",
  TIMEOUT,
  async () => {
    const chat = await client.chats.create({ name: "abort", agentId });
    const started = performance.now();
    const controller = new AbortController();
    const events = [];
    const stream = client.messages.stream(chat.id, {
      message: "ゆっくり",
      agentId,
      signal: controller.signal,
    });
    for await (const event of stream) {
      events.push(event);
      if (event.type === "response.output_text.delta") controller.abort();
    }

    assert.ok(performance.now() - started < 8000, "the answer was stopped, not waited out");
    assert.deepEqual(
      [events.at(-1).type, events.at(-1).status],
      ["response.output_text.completed", "cancelled"],
    );
    assert.equal((await storedAnswer(chat.id)).meta.status, "cancelled");
  },
);

test("a second message while an answer runs is a ConflictError", TIMEOUT, async () => {
  const chat = await client.chats.create({ name: "busy", agentId });
  const running = await client.messages.stream(chat.id, { message: "ゆっくり", agentId }).open();
  await assert.rejects(
    client.messages.send(chat.id, { message: "もう一つ", agentId }),
    (error) => error instanceof ConflictError && error.status === 409 && error.code === 10004,
  );
  await assert.rejects(
    client.messages.stream(chat.id, { message: "もう一つ", agentId }).open(),
    ConflictError,
  );
  await running.cancel();
  assert.equal(await running.finalText(), FIRST_PART);
});
