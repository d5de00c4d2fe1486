// Chatting with a real kaiwa server: the documented usage word for word, non-stream send,
// regenerate, feedback, chats, published agents, and errors mapped to their classes.
// Started by tests/e2e/test_js_client.py, which passes the server and its agents in KAIWA_*.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BadRequestError,
  KaiwaClient,
  NotFoundError,
  PermissionDeniedError,
  StreamError,
  UpstreamError,
} from "../src/index.js";

const env = process.env;
if (!env.KAIWA_URL) {
  throw new Error("These tests need a kaiwa server: run `pytest tests/e2e/test_js_client.py`");
}
const baseUrl = env.KAIWA_URL;
const apiKey = env.KAIWA_API_KEY;
const JAPANESE = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]/;
const QUICK_ANSWER = "短い答えです。";
const TIMEOUT = { timeout: 30_000 };

const direct = new KaiwaClient({ baseUrl, apiKey });

/** The chat's last assistant message, once its response has ended. */
async function storedAnswer(chatId) {
  const endsAt = Date.now() + 15_000;
  for (;;) {
    const { items } = await direct.messages.list(chatId);
    const last = items.filter((m) => m.role === "assistant").at(-1);
    if (last.meta.status !== "in_progress") return last;
    assert.ok(Date.now() < endsAt, "the answer was still running after 15 s");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test(
  "the documented usage streams a Japanese answer whose deltas equal the final text",
  TIMEOUT,
  async () => {
    const agentId = env.KAIWA_AGENT_ID;
    const message = "営業時間は?";

    const client = new KaiwaClient({ baseUrl, apiKey });
    const chat = await client.chats.create({ name: "support", agentId });
    const events = [];
    for await (const event of client.messages.stream(chat.id, { message, agentId })) {
      events.push(event);
    }

    assert.equal(events[0].type, "response.created");
    const completed = events.at(-1);
    assert.equal(completed.type, "response.output_text.completed");
    assert.equal(completed.status, "completed");
    const deltas = events
      .filter((e) => e.type === "response.output_text.delta")
      .map((e) => e.delta);
    assert.ok(deltas.length > 0);
    assert.equal(deltas.join(""), completed.final_text);
    assert.match(completed.final_text, JAPANESE);
    const title = events.find((e) => e.type === "response.chat.title.updated");
    assert.match(title.name, JAPANESE);
    assert.deepEqual(
      events.map((e) => e.id),
      events.map((_, i) => i + 1),
    );
    assert.ok(
      events.every((e) => e.response_id === events[0].response_id && e.chat_id === chat.id),
    );
    assert.equal((await storedAnswer(chat.id)).content, completed.final_text);

    // The higher-level helper on the next turn.
    const stream = client.messages.stream(chat.id, { message: "何時まで開いていますか?", agentId });
    const text = await stream.finalText();
    assert.match(text, JAPANESE);
    assert.equal(stream.state.status, "completed");
    assert.match(stream.responseId, /^[0-9a-f-]{36}$/);
    assert.equal(typeof stream.resumeToken, "string");
    const stored = await storedAnswer(chat.id);
    assert.deepEqual([stored.content, stored.meta.response_id], [text, stream.responseId]);
  },
);

test("send without streaming returns the answer's text", TIMEOUT, async () => {
  const agentId = env.KAIWA_QUICK_AGENT_ID;
  const chat = await direct.chats.create({ name: "send", agentId });
  const text = await direct.messages.send(chat.id, { message: "短く答えてください", agentId });
  assert.equal(text, QUICK_ANSWER);
  const { items, pagination, hasNext } = await direct.messages.list(chat.id);
  assert.deepEqual(
    items.map((m) => [m.role, m.content]),
    [
      ["user", "短く答えてください"],
      ["assistant", QUICK_ANSWER],
    ],
  );
  assert.deepEqual([pagination.total_records, hasNext], [2, false]);
});

test("regenerate answers again and keeps the old answers, superseded", TIMEOUT, async () => {
  const agentId = env.KAIWA_QUICK_AGENT_ID;
  const chat = await direct.chats.create({ name: "regenerate", agentId });
  const first = await direct.messages.send(chat.id, { message: "短く答えてください", agentId });
  const again = await direct.messages.regenerate(chat.id, { agentId });
  const third = await direct.messages.streamRegenerate(chat.id, { agentId }).finalText();
  const rows = [];
  for await (const row of direct.messages.iterAll(chat.id, { pageSize: 2 })) rows.push(row);

  assert.deepEqual([first, again, third], [QUICK_ANSWER, QUICK_ANSWER, QUICK_ANSWER]);
  const answers = rows.filter((row) => row.role === "assistant");
  assert.deepEqual(
    answers.map((row) => row.meta.superseded),
    [true, true, false],
  );
  assert.equal(rows.filter((row) => row.role === "user").length, 1);
});

test("every send has its own idempotency key; a repeated key answers once", TIMEOUT, async () => {
  const agentId = env.KAIWA_QUICK_AGENT_ID;
  const chat = await direct.chats.create({ name: "idempotent", agentId });
  // The same message twice, keys left to the client: two turns.
  await direct.messages.send(chat.id, { message: "同じ質問", agentId });
  await direct.messages.send(chat.id, { message: "同じ質問", agentId });
  // One key of the caller's, sent three times (streamed once): one turn, the same answer.
  const options = { message: "一度だけ", agentId, idempotencyKey: "js-1" };
  const first = await direct.messages.send(chat.id, options);
  const again = await direct.messages.send(chat.id, options);
  const streamed = await direct.messages
    .stream(chat.id, { ...options, idempotencyKey: "js-stream" })
    .finalText();
  const replayed = await direct.messages
    .stream(chat.id, { ...options, idempotencyKey: "js-stream" })
    .finalText();
  await assert.rejects(
    direct.messages.send(chat.id, { ...options, message: "別の質問" }),
    (error) => error.status === 409 && /different request/.test(error.message),
  );
  const rows = [];
  for await (const row of direct.messages.iterAll(chat.id)) rows.push(row);

  assert.deepEqual([first, again, streamed, replayed], Array(4).fill(QUICK_ANSWER));
  assert.deepEqual(
    rows.filter((row) => row.role === "user").map((row) => row.content),
    ["同じ質問", "同じ質問", "一度だけ", "一度だけ"],
  );
});

test("feedback on an answer is given, then replaced", TIMEOUT, async () => {
  const agentId = env.KAIWA_QUICK_AGENT_ID;
  const chat = await direct.chats.create({ name: "feedback", agentId });
  await direct.messages.send(chat.id, { message: "こんにちは", agentId });
  const answer = await storedAnswer(chat.id);

  const given = await direct.feedback.create(chat.id, answer.id, { type: "sys_helpful" });
  const replaced = await direct.feedback.create(chat.id, answer.id, {
    type: "sys_improve",
    content: "もっと詳しく",
  });
  assert.deepEqual([given.message_id, given.type, given.content], [answer.id, "sys_helpful", ""]);
  assert.deepEqual(
    [replaced.id, replaced.type, replaced.content],
    [given.id, "sys_improve", "もっと詳しく"],
  );
  const user = (await direct.messages.list(chat.id)).items[0];
  await assert.rejects(
    direct.feedback.create(chat.id, user.id, { type: "sys_helpful" }),
    BadRequestError,
  );
});

test("chats are created, listed, renamed; published agents are listed", TIMEOUT, async () => {
  const agentId = env.KAIWA_QUICK_AGENT_ID;
  const chat = await direct.chats.create({ name: "before", agentId, externalUserId: "user-1" });
  const renamed = await direct.chats.rename(chat.id, { name: "名前を変えた" });
  assert.deepEqual([renamed.id, renamed.name], [chat.id, "名前を変えた"]);
  const { items } = await direct.chats.list({ externalUserId: "user-1", limit: 10 });
  assert.deepEqual(
    items.map((c) => [c.id, c.name]),
    [[chat.id, "名前を変えた"]],
  );

  const published = await direct.agents.published();
  const ids = published.map((agent) => agent.id);
  for (const name of ["KAIWA_AGENT_ID", "KAIWA_QUICK_AGENT_ID", "KAIWA_SLOW_AGENT_ID"]) {
    assert.ok(ids.includes(env[name]), `${name} is published`);
  }
});

test(
  "errors map to their classes: bad key, unknown chat, bad input, chat key on management",
  TIMEOUT,
  async () => {
    const agentId = env.KAIWA_QUICK_AGENT_ID;
    const badKey = new KaiwaClient({ baseUrl, apiKey: "not-a-key" });
    const denied = (status) => (error) =>
      error instanceof PermissionDeniedError && error.status === status && error.code === 10001;
    await assert.rejects(badKey.chats.list(), denied(401));
    await assert.rejects(
      badKey.messages.stream(1, { message: "?", agentId }).finalText(),
      denied(401),
    );

    const missing = (error) =>
      error instanceof NotFoundError && error.status === 404 && error.code === 10003;
    await assert.rejects(direct.messages.send(2 ** 40, { message: "?", agentId }), missing);
    await assert.rejects(
      direct.messages.stream(2 ** 40, { message: "?", agentId }).open(),
      missing,
    );

    const chat = await direct.chats.create({ name: "errors", agentId });
    await assert.rejects(
      direct.messages.send(chat.id, { message: "", agentId }),
      (error) =>
        error instanceof BadRequestError && error.status === 400 && /message/.test(error.message),
    );
    const chatKey = new KaiwaClient({ baseUrl, apiKey: env.KAIWA_CHAT_KEY });
    await assert.rejects(chatKey.agents.create({ name: "no" }), denied(403));
  },
);

test(
  "a failure inside the stream is thrown after the text before it, as a StreamError",
  TIMEOUT,
  async () => {
    const agentId = env.KAIWA_FAILING_AGENT_ID;
    const chat = await direct.chats.create({ name: "failing", agentId });
    const stream = direct.messages.stream(chat.id, { message: "失敗して", agentId });
    const types = [];
    await assert.rejects(
      async () => {
        for await (const event of stream) types.push(event.type);
      },
      (error) =>
        error instanceof StreamError && error instanceof UpstreamError && error.code === 10009,
    );
    assert.deepEqual(types.slice(0, 2), ["response.created", "response.output_text.delta"]);
    assert.deepEqual([stream.state.text, stream.state.status], ["途中まで", "failed"]);
    await assert.rejects(stream.finalText(), StreamError);
    assert.equal((await storedAnswer(chat.id)).meta.status, "failed");
  },
);
