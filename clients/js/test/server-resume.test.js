// Resuming against a real kaiwa server: a connection cut mid-answer by a proxy, a network that
// stays broken, and a resume token read without the API key.
// Started by tests/e2e/test_js_client.py, which passes the server, agents and proxies in KAIWA_*.
//
// The proxy counts every connection's bytes together, so it would also cut the reconnection; the
// client's `fetch` sends the events endpoint (the reconnection) straight to the server instead:
// the network path failed once, then healed.

import assert from "node:assert/strict";
import { test } from "node:test";

import { APIConnectionError, KaiwaClient, PermissionDeniedError } from "../src/index.js";

const env = process.env;
if (!env.KAIWA_URL) {
  throw new Error("These tests need a kaiwa server: run `pytest tests/e2e/test_js_client.py`");
}
const baseUrl = env.KAIWA_URL;
const apiKey = env.KAIWA_API_KEY;
const PIECES = Array.from({ length: 30 }, (_, n) => `${n + 1}番目の文です。`);
const ANSWER = PIECES.join("");
const FAST = { attempts: 3, backoff: 50 };
const TIMEOUT = { timeout: 30_000 };

const direct = new KaiwaClient({ baseUrl, apiKey });

async function storedAnswer(chatId) {
  const endsAt = Date.now() + 15_000;
  for (;;) {
    const { items } = await direct.messages.list(chatId);
    const last = items.filter((m) => m.role === "assistant").at(-1);
    if (last.meta.status !== "in_progress") return last.content;
    assert.ok(Date.now() < endsAt, "the answer was still running after 15 s");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test(
  "a connection cut mid-answer is resumed and every event arrives exactly once",
  TIMEOUT,
  async () => {
    const agentId = env.KAIWA_LONG_AGENT_ID;
    const reconnections = [];
    const healed = (input, init) => {
      const url = new URL(input);
      if (url.pathname.endsWith("/events")) {
        url.host = new URL(baseUrl).host;
        reconnections.push(init.headers);
      }
      return fetch(url, init);
    };
    const chat = await direct.chats.create({ name: "cut", agentId });
    const client = new KaiwaClient({
      baseUrl: env.KAIWA_PROXY_URL,
      apiKey,
      resume: FAST,
      fetch: healed,
    });

    const stream = client.messages.stream(chat.id, { message: "長めに", agentId });
    const events = [];
    for await (const event of stream) events.push(event);
    const text = await stream.finalText();

    assert.deepEqual(
      events.map((e) => e.id),
      events.map((_, i) => i + 1),
      "no gap, no repeat",
    );
    assert.equal(events[0].type, "response.created");
    const completed = events.at(-1);
    assert.deepEqual(
      [completed.type, completed.status],
      ["response.output_text.completed", "completed"],
    );
    const deltas = events
      .filter((e) => e.type === "response.output_text.delta")
      .map((e) => e.delta);
    assert.deepEqual(deltas, PIECES, "every delta exactly once, in order");
    assert.equal(text, ANSWER);
    assert.equal(completed.final_text, ANSWER);
    assert.equal(await storedAnswer(chat.id), ANSWER);
    assert.equal(reconnections.length, 1, "one cut, one reconnection");
    const cursor = Number(reconnections[0]["last-event-id"]);
    assert.ok(
      cursor >= 1 && cursor < events.length / 2,
      `the cut came mid-answer (after ${cursor})`,
    );
  },
);

test(
  "when every reconnection is cut too, the stream gives up after its attempts",
  TIMEOUT,
  async () => {
    const agentId = env.KAIWA_LONG_AGENT_ID;
    const chat = await direct.chats.create({ name: "gives up", agentId });
    const client = new KaiwaClient({ baseUrl: env.KAIWA_GIVEUP_PROXY_URL, apiKey, resume: FAST });
    const stream = client.messages.stream(chat.id, { message: "長めに", agentId });
    const seen = [];
    await assert.rejects(
      async () => {
        for await (const event of stream) seen.push(event);
      },
      (error) => error instanceof APIConnectionError && /3 attempts/.test(error.message),
    );

    assert.ok(seen.length > 0, "what arrived before the cut was handed out");
    assert.equal(stream.lastEventId, seen.length);
    // The answer itself went on: a later reader gets the rest of it.
    assert.equal(await storedAnswer(chat.id), ANSWER);
    const rest = direct.responses.events(chat.id, stream.responseId, { after: stream.lastEventId });
    const restEvents = [];
    for await (const event of rest) restEvents.push(event);
    assert.equal(restEvents[0].id, seen.length + 1);
    const restDeltas = restEvents
      .filter((e) => e.type === "response.output_text.delta")
      .map((e) => e.delta);
    const seenDeltas = seen
      .filter((e) => e.type === "response.output_text.delta")
      .map((e) => e.delta);
    assert.deepEqual([...seenDeltas, ...restDeltas], PIECES);
    assert.equal(await rest.finalText(), ANSWER);
  },
);

test("a resume token replays the response without the API key", TIMEOUT, async () => {
  const agentId = env.KAIWA_QUICK_AGENT_ID;
  const chat = await direct.chats.create({ name: "token", agentId });
  const stream = direct.messages.stream(chat.id, { message: "短く", agentId });
  const text = await stream.finalText();
  const token = stream.resumeToken;
  assert.equal(typeof token, "string");

  const page = new KaiwaClient({ baseUrl, apiKey: "a-page-has-no-key" });
  const replay = page.responses.events(chat.id, stream.responseId, { token });
  const events = [];
  for await (const event of replay) events.push(event);
  assert.equal(events[0].type, "response.created");
  assert.deepEqual(
    events.map((e) => e.id),
    events.map((_, i) => i + 1),
  );
  assert.equal(await replay.finalText(), text);

  const after = page.responses.events(chat.id, stream.responseId, { token, after: 2 });
  const [first] = await collectFirst(after);
  assert.equal(first.id, 3);
  await assert.rejects(
    page.responses.events(chat.id, stream.responseId).finalText(),
    (error) => error instanceof PermissionDeniedError && error.status === 401,
  );
  const status = await direct.responses.get(chat.id, stream.responseId);
  assert.deepEqual(
    [status.id, status.status, status.final_text],
    [stream.responseId, "completed", text],
  );
});

async function collectFirst(stream) {
  for await (const event of stream) return [event]; // leaving the loop drops the connection
  return [];
}
