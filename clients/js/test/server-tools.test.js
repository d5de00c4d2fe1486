// Forms, uploads and knowledge bases on a real kaiwa server.
// Started by tests/e2e/test_js_client.py, which passes the server and its agents in KAIWA_*.

import assert from "node:assert/strict";
import { test } from "node:test";

import { BadRequestError, ConflictError, KaiwaClient } from "../src/index.js";

const env = process.env;
if (!env.KAIWA_URL) {
  throw new Error("These tests need a kaiwa server: run `pytest tests/e2e/test_js_client.py`");
}
const client = new KaiwaClient({ baseUrl: env.KAIWA_URL, apiKey: env.KAIWA_API_KEY });
const TIMEOUT = { timeout: 30_000 };

async function collect(stream) {
  const events = [];
  for await (const event of stream) events.push(event);
  return events;
}

/** A chat whose answer paused on a form; the form's start step. */
async function pausedOnForm() {
  const agentId = env.KAIWA_FORM_AGENT_ID;
  const chat = await client.chats.create({ name: "form", agentId });
  const events = await collect(
    client.messages.stream(chat.id, { message: "申し込みたいです", agentId }),
  );
  const start = events.find((e) => e.type === "response.reasoning_step.start");
  return { chat, events, start };
}

test("a form pauses the answer, and a streamed submit goes on with the turn", TIMEOUT, async () => {
  const { chat, events, start } = await pausedOnForm();
  assert.deepEqual(
    [start.step.type, start.step.tool_name],
    ["consultant_request_form", "request_form"],
  );
  const formId = start.step.args.form_request_id;
  assert.deepEqual(
    start.step.args.fields.map((f) => f.name),
    ["name", "plan"],
  );
  const paused = events.at(-1);
  assert.deepEqual([paused.status, paused.final_text], ["awaiting_form", "先にフォームを。"]);

  await assert.rejects(
    client.forms.submit(chat.id, formId, { name: "山田", plan: "gold" }),
    (error) => error instanceof BadRequestError && /plan/.test(error.message),
  );
  const values = { name: "山田", plan: "pro" };
  const stream = client.forms.stream(chat.id, formId, values);
  const resumed = await collect(stream);
  assert.deepEqual(
    resumed.slice(0, 2).map((e) => e.type),
    ["response.created", "response.reasoning_step.end"],
  );
  assert.equal(resumed[1].step.id, start.step.id);
  assert.deepEqual(resumed[1].step.result.data, values);
  assert.notEqual(stream.responseId, paused.response_id, "the turn goes on as a new response");
  assert.equal(await stream.finalText(), "ありがとうございます。");
  assert.equal(resumed.at(-1).status, "completed");

  await assert.rejects(client.forms.submit(chat.id, formId, values), ConflictError);
});

test("a form submitted without streaming answers with the rest's text", TIMEOUT, async () => {
  const { chat, start } = await pausedOnForm();
  const text = await client.forms.submit(chat.id, start.step.args.form_request_id, {
    name: "a",
    plan: "free",
  });
  assert.equal(text, "ありがとうございます。");
});

test("a file uploaded from bytes is attached to a message and downloadable", TIMEOUT, async () => {
  const content = "営業時間は九時から五時です。\n";
  const bytes = new TextEncoder().encode(content);
  const uploaded = await client.files.upload(bytes, {
    filename: "営業時間.txt",
    scope: "ephemeral",
  });
  assert.deepEqual(
    [uploaded.original_name, uploaded.size, uploaded.scope, uploaded.content_type],
    ["営業時間.txt", bytes.length, "ephemeral", "text/plain"],
  );
  const persistent = await client.files.upload(new Blob([bytes], { type: "text/plain" }), {
    filename: "b.txt",
  });
  assert.equal(persistent.scope, "persistent");

  const download = await fetch(uploaded.file_url, { headers: { "x-api-key": env.KAIWA_API_KEY } });
  assert.equal(download.status, 200);
  assert.equal(await download.text(), content);

  const agentId = env.KAIWA_QUICK_AGENT_ID;
  const chat = await client.chats.create({ name: "files", agentId });
  await client.messages.send(chat.id, {
    message: "添付を見て",
    agentId,
    attachedFileUuids: [uploaded.uuid],
  });
  const { items } = await client.messages.list(chat.id);
  assert.deepEqual(
    items[0].attached_files.map((f) => f.uuid),
    [uploaded.uuid],
  );

  await assert.rejects(
    client.files.upload(bytes, { filename: "c.txt", scope: "forever" }),
    BadRequestError,
  );
});

test(
  "a knowledge base takes a document, indexes it, finds it, and lets it go",
  TIMEOUT,
  async () => {
    const base = await client.knowledgeBases.create({
      name: "営業案内",
      description: "店舗の情報",
    });
    try {
      const added = await client.knowledgeBases.addDocument(base.id, {
        title: "営業時間",
        text: "当店の営業時間は平日九時から十七時までです。土日祝日は休業です。",
      });
      assert.equal(added.knowledge_base_id, base.id);
      const endsAt = Date.now() + 15_000;
      let document = added;
      while (document.status === "processing") {
        assert.ok(Date.now() < endsAt, "the document was still processing after 15 s");
        await new Promise((resolve) => setTimeout(resolve, 100));
        document = await client.knowledgeBases.getDocument(base.id, added.id);
      }
      assert.equal(document.status, "ready", document.error);

      const hits = await client.knowledgeBases.search(base.id, { query: "営業時間", topK: 3 });
      assert.ok(hits.length > 0);
      assert.equal(hits[0].document_id, added.id);
      const { items } = await client.knowledgeBases.listDocuments(base.id);
      assert.deepEqual(
        items.map((d) => d.id),
        [added.id],
      );

      await client.knowledgeBases.deleteDocument(base.id, added.id);
      assert.equal((await client.knowledgeBases.listDocuments(base.id)).items.length, 0);
    } finally {
      await client.knowledgeBases.delete(base.id);
    }
  },
);
