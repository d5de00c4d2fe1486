// KaiwaStream and the JSON calls against a scripted loopback HTTP server (node:http): drops,
// silences, replays, refusals and stops that a real server cannot be made to produce on cue.

import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";

import {
  APIConnectionError,
  APITimeoutError,
  ConflictError,
  KaiwaClient,
  KaiwaError,
  NotFoundError,
  StreamError,
  UpstreamError,
} from "../src/index.js";

const RID = "3f1c2a9e-0000-4000-8000-000000000001";
const CHAT = 12;
const FAST = { attempts: 2, backoff: 10, maxBackoff: 1000 };
const MESSAGES = `/api/v1/chats/${CHAT}/messages`;
const EVENTS = `/api/v1/chats/${CHAT}/responses/${RID}/events`;
const CANCEL = `/api/v1/chats/${CHAT}/responses/${RID}/cancel`;

const base = { response_id: RID, chat_id: CHAT };
const EVENTS_OF_ANSWER = [
  {
    ...base,
    type: "response.created",
    agent_id: "a",
    model: "scripted/x",
    conversation_group_id: "cvg-1",
    user_conversation_id: 1,
    resume_token: "tok",
  },
  { ...base, type: "response.output_text.delta", delta: "営業" },
  { ...base, type: "response.output_text.delta", delta: "時間は" },
  { ...base, type: "response.output_text.delta", delta: "九時です。" },
  {
    ...base,
    type: "response.output_text.completed",
    final_text: "営業時間は九時です。",
    usage: { total_prompt_tokens: 1, total_completion_tokens: 2, total_tokens: 3, total_calls: 1 },
    status: "completed",
  },
];
const frame = (id, event = EVENTS_OF_ANSWER[id - 1]) =>
  `id: ${id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
const frames = (from, to) =>
  EVENTS_OF_ANSWER.slice(from - 1, to)
    .map((e, i) => frame(from + i, e))
    .join("");
const DONE = "data: [DONE]\n\n";

function startStream(res) {
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "x-kaiwa-response-id": RID,
  });
  res.write(": ping\n"); // as kaiwa sends it: a comment line, no blank line
}

function envelope(res, status, data, { code = 0, message = null, headers = {} } = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify({ data, message, error_code: code, pagination: null }));
}

/** A loopback server playing `routes["METHOD /path"](req, res, n)` (n: 1 for the first call). */
async function serve(routes, run) {
  const seen = [];
  const counts = new Map();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const key = `${req.method} ${url.pathname}`;
    const n = (counts.get(key) ?? 0) + 1;
    counts.set(key, n);
    seen.push({ key, url, headers: req.headers });
    const route = routes[key];
    if (!route) return envelope(res, 404, null, { code: 10003, message: `no route ${key}` });
    req.resume();
    req.on("end", () => route(req, res, n));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const baseUrl = `http://127.0.0.1:${server.address().port}`;
  try {
    await run(new KaiwaClient({ baseUrl, apiKey: "k", resume: FAST }), seen, baseUrl);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

async function collect(stream) {
  const events = [];
  for await (const event of stream) events.push(event);
  return events;
}

const ask = (client, options = {}) =>
  client.messages.stream(CHAT, { message: "営業時間は?", agentId: "a", ...options });

test("a body ending without [DONE] is resumed after the last event handed out", async () => {
  await serve(
    {
      [`POST ${MESSAGES}`]: (req, res) => {
        startStream(res);
        // Cut inside frame 3, after its id line: the cursor must resume after 2, not 3.
        res.end(frames(1, 2) + frame(3).slice(0, 20));
      },
      // The server replays from the start: the client skips what it has already handed out.
      [`GET ${EVENTS}`]: (req, res) => {
        startStream(res);
        res.end(frames(1, 5) + DONE);
      },
    },
    async (client, seen) => {
      const stream = ask(client);
      const events = await collect(stream);
      assert.deepEqual(
        events.map((e) => e.id),
        [1, 2, 3, 4, 5],
      );
      assert.deepEqual(events, EVENTS_OF_ANSWER);
      assert.equal(await stream.finalText(), "営業時間は九時です。");
      const resume = seen.find((r) => r.key === `GET ${EVENTS}`);
      assert.equal(resume.headers["last-event-id"], "2");
      assert.equal(resume.headers["x-api-key"], "k");
      assert.deepEqual(
        [stream.responseId, stream.lastEventId, stream.resumeToken],
        [RID, 5, "tok"],
      );
    },
  );
});

test("an event's id is its SSE id, outside its JSON", async () => {
  await serve(
    {
      [`POST ${MESSAGES}`]: (req, res) => {
        startStream(res);
        res.end(frames(1, 5) + DONE);
      },
    },
    async (client) => {
      const [created] = await collect(ask(client));
      assert.equal(created.id, 1);
      assert.equal(Object.keys(created).includes("id"), false);
      assert.deepEqual(JSON.parse(JSON.stringify(created)), EVENTS_OF_ANSWER[0]);
    },
  );
});

test("silence longer than the timeout counts as a drop and is resumed", async () => {
  await serve(
    {
      [`POST ${MESSAGES}`]: (req, res) => {
        startStream(res);
        res.write(frames(1, 2)); // then nothing, not even a ping
      },
      [`GET ${EVENTS}`]: (req, res) => {
        startStream(res);
        res.end(frames(3, 5) + DONE);
      },
    },
    async (_client, seen, baseUrl) => {
      const client = new KaiwaClient({ baseUrl, apiKey: "k", timeout: 200, resume: FAST });
      const events = await collect(ask(client));
      assert.deepEqual(
        events.map((e) => e.id),
        [1, 2, 3, 4, 5],
      );
      assert.equal(seen.find((r) => r.key === `GET ${EVENTS}`).headers["last-event-id"], "2");
    },
  );
});

test("when every reconnection fails, what arrived comes first, then the error", async () => {
  await serve(
    {
      [`POST ${MESSAGES}`]: (req, res) => {
        startStream(res);
        res.end(frames(1, 2));
      },
      [`GET ${EVENTS}`]: (req, res) => envelope(res, 503, null, { code: 10005, message: "down" }),
    },
    async (client, seen) => {
      const events = [];
      await assert.rejects(
        async () => {
          for await (const event of ask(client)) events.push(event);
        },
        (error) =>
          error instanceof APIConnectionError &&
          /2 attempts to resume it failed/.test(error.message),
      );
      assert.deepEqual(
        events.map((e) => e.id),
        [1, 2],
      );
      assert.equal(seen.filter((r) => r.key === `GET ${EVENTS}`).length, 2);
    },
  );
});

test("a 404 from the events endpoint is thrown at once, not retried", async () => {
  await serve(
    {
      [`POST ${MESSAGES}`]: (req, res) => {
        startStream(res);
        res.end(frames(1, 2));
      },
      [`GET ${EVENTS}`]: (req, res) => envelope(res, 404, null, { code: 10003, message: "gone" }),
    },
    async (client, seen) => {
      await assert.rejects(collect(ask(client)), NotFoundError);
      assert.equal(seen.filter((r) => r.key === `GET ${EVENTS}`).length, 1);
    },
  );
});

test("a 429 from the events endpoint is retried after its Retry-After", async () => {
  let refusedAt = 0;
  let retriedAt = 0;
  await serve(
    {
      [`POST ${MESSAGES}`]: (req, res) => {
        startStream(res);
        res.end(frames(1, 2));
      },
      [`GET ${EVENTS}`]: (req, res, n) => {
        if (n === 1) {
          refusedAt = performance.now();
          return envelope(res, 429, null, {
            code: 10007,
            message: "slow",
            headers: { "retry-after": "0.3" },
          });
        }
        retriedAt = performance.now();
        startStream(res);
        res.end(frames(3, 5) + DONE);
      },
    },
    async (client) => {
      const events = await collect(ask(client));
      assert.equal(events.length, 5);
      assert.ok(retriedAt - refusedAt >= 250, `retried after ${retriedAt - refusedAt} ms`);
    },
  );
});

test("response.error is thrown after every event before it, as its code's family", async () => {
  const failure = {
    ...base,
    type: "response.error",
    message: "scripted failure: boom",
    code: 10009,
  };
  const future = { ...base, type: "response.future.thing", anything: 1 };
  await serve(
    {
      [`POST ${MESSAGES}`]: (req, res) => {
        startStream(res);
        res.end(frames(1, 2) + frame(3, future) + frame(4, failure) + DONE);
      },
    },
    async (client) => {
      const stream = ask(client);
      const events = [];
      await assert.rejects(
        async () => {
          for await (const event of stream) events.push(event);
        },
        (error) =>
          error instanceof StreamError && error instanceof UpstreamError && error.code === 10009,
      );
      assert.deepEqual(
        events.map((e) => e.type),
        ["response.created", "response.output_text.delta"],
      );
      await assert.rejects(stream.finalText(), StreamError);
      assert.deepEqual([stream.state.status, stream.state.text], ["failed", "営業"]);
    },
  );
});

test("an error answer before the stream starts is thrown by open() and the iteration", async () => {
  await serve(
    {
      [`POST ${MESSAGES}`]: (req, res) =>
        envelope(res, 409, null, { code: 10004, message: "busy" }),
    },
    async (client, seen) => {
      const stream = ask(client);
      await assert.rejects(stream.open(), ConflictError);
      await assert.rejects(collect(stream), ConflictError);
      assert.equal(seen.length, 1, "the request is sent once");
    },
  );
});

test("a signal aborted before the request goes out: nothing sent, its reason thrown", async () => {
  await serve({}, async (client, seen) => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(collect(ask(client, { signal: controller.signal })), {
      name: "AbortError",
    });
    assert.equal(seen.length, 0);
  });
});

/** A server whose answer waits after two events until it is cancelled. */
function cancellable() {
  let open = null;
  return {
    [`POST ${MESSAGES}`]: (req, res) => {
      startStream(res);
      res.write(frames(1, 2));
      open = res;
    },
    [`POST ${CANCEL}`]: (req, res) => {
      const completed = { ...EVENTS_OF_ANSWER[4], final_text: "営業", status: "cancelled" };
      open.end(frame(3, completed) + DONE);
      envelope(res, 200, { id: RID, chat_id: CHAT, status: "cancelled", final_text: "営業" });
    },
  };
}

test("aborting the signal cancels the response; the stream ends completed, cancelled", async () => {
  await serve(cancellable(), async (client, seen) => {
    const controller = new AbortController();
    const events = [];
    for await (const event of ask(client, { signal: controller.signal })) {
      events.push(event);
      if (event.type === "response.output_text.delta") controller.abort();
    }
    assert.deepEqual(events.at(-1).status, "cancelled");
    assert.equal(events.at(-1).final_text, "営業");
    assert.equal(seen.filter((r) => r.key === `POST ${CANCEL}`).length, 1);
  });
});

test("stream.cancel() before the response id is known is sent once it is", async () => {
  await serve(cancellable(), async (client) => {
    const stream = ask(client);
    const status = stream.cancel(); // nothing sent yet
    const text = await stream.finalText();
    assert.equal((await status).status, "cancelled");
    assert.deepEqual([text, stream.state.status], ["営業", "cancelled"]);
  });
});

test("a break drops the connection; iterating again reattaches after the last event", async () => {
  let firstClosed = false;
  await serve(
    {
      [`POST ${MESSAGES}`]: (req, res) => {
        startStream(res);
        res.write(frames(1, 2));
        res.on("close", () => {
          firstClosed = true;
        });
      },
      [`GET ${EVENTS}`]: (req, res) => {
        startStream(res);
        res.end(frames(3, 5) + DONE);
      },
    },
    async (client, seen) => {
      const stream = ask(client);
      for await (const event of stream) {
        if (event.type === "response.output_text.delta") break;
      }
      assert.equal(stream.lastEventId, 2);
      assert.equal(await stream.finalText(), "営業時間は九時です。");
      assert.ok(firstClosed, "the first connection was closed by the break");
      assert.equal(seen.find((r) => r.key === `GET ${EVENTS}`).headers["last-event-id"], "2");
    },
  );
});

test("a stream read with a resume token sends no key and resumes with ?after=", async () => {
  await serve(
    {
      [`GET ${EVENTS}`]: (req, res, n) => {
        startStream(res);
        res.end(n === 1 ? frames(2, 3) : frames(4, 5) + DONE);
      },
    },
    async (client, seen) => {
      const stream = client.responses.events(CHAT, RID, { after: 1, token: "tok" });
      const events = await collect(stream);
      assert.deepEqual(
        events.map((e) => e.id),
        [2, 3, 4, 5],
      );
      const [first, second] = seen;
      assert.deepEqual(
        [...first.url.searchParams],
        [
          ["after", "1"],
          ["token", "tok"],
        ],
      );
      assert.deepEqual(
        [...second.url.searchParams],
        [
          ["token", "tok"],
          ["after", "3"],
        ],
      );
      for (const request of seen) {
        assert.equal(request.headers["x-api-key"], undefined);
        assert.equal(request.headers["last-event-id"], undefined);
      }
    },
  );
});

test("JSON calls return the envelope's data, and name a malformed or late answer", async () => {
  await serve(
    {
      [`POST ${MESSAGES}`]: (req, res, n) => {
        if (n === 1) return envelope(res, 200, "九時です。");
        if (n === 2) return envelope(res, 502, null, { code: 10009, message: "provider down" });
        if (n === 3) {
          res.writeHead(200, { "content-type": "text/html" });
          return res.end("<html>proxy</html>");
        }
        // n === 4: never answers
      },
    },
    async (_client, _seen, baseUrl) => {
      const client = new KaiwaClient({ baseUrl: `${baseUrl}/api/v1/`, apiKey: "k", timeout: 300 });
      const send = () => client.messages.send(CHAT, { message: "?", agentId: "a" });
      assert.equal(await send(), "九時です。");
      await assert.rejects(
        send(),
        (e) => e instanceof UpstreamError && e.status === 502 && e.message === "provider down",
      );
      await assert.rejects(
        send(),
        (e) => e instanceof KaiwaError && /Unexpected answer/.test(e.message),
      );
      await assert.rejects(send(), APITimeoutError);
    },
  );
});
