// SSEDecoder: tables of bytes in, events out; no network.

import assert from "node:assert/strict";
import { test } from "node:test";

import { SSEDecoder } from "../src/index.js";

const utf8 = (text) => new TextEncoder().encode(text);
const bytes = (...values) => Uint8Array.from(values);
const ev = (data, { event = "message", id = null, retry = null } = {}) => ({
  event,
  data,
  id,
  retry,
});

function decodeAll(chunks) {
  const decoder = new SSEDecoder();
  const events = chunks.flatMap((chunk) => decoder.decode(chunk));
  return [...events, ...decoder.flush()];
}

/** The same bytes cut at every position into two chunks, and one byte at a time. */
function everySplit(whole) {
  const splits = [[whole], Array.from(whole, (byte) => bytes(byte))];
  for (let at = 1; at < whole.length; at += 1) splits.push([whole.slice(0, at), whole.slice(at)]);
  return splits;
}

const TABLE = [
  {
    name: "a kaiwa frame: id, event, one data line of JSON",
    input: 'id: 7\nevent: response.output_text.delta\ndata: {"delta":"営業時間は"}\n\n',
    events: [ev('{"delta":"営業時間は"}', { event: "response.output_text.delta", id: "7" })],
  },
  {
    name: "LF line endings, a comment, [DONE]",
    input: ": ping\n\nid: 1\ndata: a\n\ndata: [DONE]\n\n",
    events: [ev("a", { id: "1" }), ev("[DONE]", { id: "1" })],
  },
  {
    name: "kaiwa's keep-alive: a comment line directly before the next frame's fields",
    input: ": ping\nid: 1\nevent: x\ndata: a\n\n: ping\n: ping\nid: 2\nevent: y\ndata: b\n\n",
    events: [ev("a", { event: "x", id: "1" }), ev("b", { event: "y", id: "2" })],
  },
  {
    name: "a stream that is only a keep-alive and [DONE]",
    input: ": ping\ndata: [DONE]\n\n",
    events: [ev("[DONE]")],
  },
  {
    name: "CRLF line endings",
    input: "id: 1\r\nevent: x\r\ndata: こんにちは\r\n\r\ndata: [DONE]\r\n\r\n",
    events: [ev("こんにちは", { event: "x", id: "1" }), ev("[DONE]", { id: "1" })],
  },
  {
    name: "CR line endings",
    input: "event: x\rdata: 一\r\rdata: 二\r\r",
    events: [ev("一", { event: "x" }), ev("二")],
  },
  {
    name: "mixed line endings in one stream",
    input: "data: a\r\n\ndata: b\r\rdata: c\n\r\n",
    events: [ev("a"), ev("b"), ev("c")],
  },
  {
    name: "multi-line data joined with LF",
    input: "data: first\ndata: second\ndata:third\n\n",
    events: [ev("first\nsecond\nthird")],
  },
  {
    name: "only one leading space is stripped; a field without a colon is empty",
    input: "data:  two spaces\ndata\n\n",
    events: [ev(" two spaces\n")],
  },
  {
    name: "comments and unknown fields are ignored; an event without data is not dispatched",
    input: ": ping\nfoo: bar\n\nevent: empty\n\n: another\ndata: x\n\n",
    events: [ev("x")],
  },
  {
    name: "the last id carries over to later events; an id with NUL is ignored",
    input: "id: 3\ndata: a\n\ndata: b\n\nid: 4\0\ndata: c\n\n",
    events: [ev("a", { id: "3" }), ev("b", { id: "3" }), ev("c", { id: "3" })],
  },
  {
    name: "retry is read when it is all digits",
    input: "retry: 1500\ndata: a\n\nretry: soon\ndata: b\n\n",
    events: [ev("a", { retry: 1500 }), ev("b", { retry: 1500 })],
  },
  {
    name: "a leading BOM is dropped",
    input: "\ufeffdata: a\n\n",
    events: [ev("a")],
  },
  {
    name: "an unfinished event at the end is discarded",
    input: "data: whole\n\ndata: cut off",
    events: [ev("whole")],
  },
];

for (const { name, input, events } of TABLE) {
  test(`decodes ${name}, however the bytes are split`, () => {
    for (const chunks of everySplit(utf8(input))) {
      assert.deepEqual(decodeAll(chunks), events, `split as ${chunks.map((c) => c.length)}`);
    }
  });
}

test("a multi-byte character split across chunks waits for its last byte", () => {
  const decoder = new SSEDecoder();
  // 営 is E5 96 B6.
  assert.deepEqual(decoder.decode(utf8("event: x\ndata: ")), []);
  assert.deepEqual(decoder.decode(bytes(0xe5, 0x96)), []);
  assert.deepEqual(decoder.decode(bytes(0xb6, 0x0a, 0x0a)), [ev("営", { event: "x" })]);
});

test("a CR at the end of a chunk and a LF at the start of the next are one line ending", () => {
  const decoder = new SSEDecoder();
  assert.deepEqual(decoder.decode(utf8("data: a\r")), []);
  // Were the LF a second line ending, this would dispatch an event here.
  assert.deepEqual(decoder.decode(utf8("\ndata: b\r")), []);
  assert.deepEqual(decoder.decode(utf8("\n\r\n")), [ev("a\nb")]);
});

test("a CR at a chunk's end followed by a blank line dispatches once", () => {
  const decoder = new SSEDecoder();
  assert.deepEqual(decoder.decode(utf8("data: a\r")), []);
  assert.deepEqual(decoder.decode(utf8("\r")), [ev("a")]);
  assert.deepEqual(decoder.decode(utf8("\n")), []);
});

test("invalid UTF-8 becomes U+FFFD instead of throwing", () => {
  assert.deepEqual(decodeAll([bytes(0x64, 0x61, 0x74, 0x61, 0x3a, 0x20, 0xff, 0x0a, 0x0a)]), [
    ev("\ufffd"),
  ]);
});

test("a long line arriving in many small chunks is reassembled", () => {
  const text = "あ".repeat(5000);
  const whole = utf8(`data: ${text}\n\n`);
  const chunks = [];
  for (let at = 0; at < whole.length; at += 7) chunks.push(whole.slice(at, at + 7));
  assert.deepEqual(decodeAll(chunks), [ev(text)]);
});

test("lastEventId follows id lines, even of a frame not finished yet", () => {
  const decoder = new SSEDecoder();
  decoder.decode(utf8("id: 5\ndata: a\n\nid: 6\ndata: b"));
  assert.equal(decoder.lastEventId, "6");
});
