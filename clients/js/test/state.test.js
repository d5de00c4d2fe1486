// ResponseState: events folded into text, steps, title, usage and status; no network.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ResponseState } from "../src/index.js";

const base = { response_id: "r", chat_id: 1 };
const usage = {
  total_prompt_tokens: 3,
  total_completion_tokens: 4,
  total_tokens: 7,
  total_calls: 1,
};

test("deltas accumulate until completed gives the final text", () => {
  const state = new ResponseState();
  state.apply({ ...base, type: "response.output_text.delta", delta: "こん" });
  state.apply({ ...base, type: "response.output_text.delta", delta: "にちは" });
  assert.equal(state.text, "こんにちは");
  assert.equal(state.done, false);
  state.apply({
    ...base,
    type: "response.output_text.completed",
    final_text: "こんにちは。",
    usage,
  });
  assert.deepEqual([state.text, state.status, state.usage], ["こんにちは。", "completed", usage]);
  assert.equal(state.done, true);
});

test("a step's end is merged into its start; the title and a cancelled status are kept", () => {
  const state = new ResponseState();
  const start = {
    id: "s1",
    type: "consultant_lookup",
    tool_name: "lookup",
    content: "探す",
    args: {},
    timestamp: "t0",
  };
  const end = {
    id: "s1",
    type: "consultant_lookup",
    tool_name: "lookup",
    result: { success: true, data: [] },
    timestamp: "t1",
    token_usage: usage,
  };
  state.apply({ ...base, type: "response.reasoning_step.start", step: start });
  state.apply({ ...base, type: "response.reasoning_step.end", step: end });
  state.apply({ ...base, type: "response.chat.title.updated", name: "題" });
  state.apply({
    ...base,
    type: "response.output_text.completed",
    final_text: "",
    usage,
    status: "cancelled",
  });
  assert.equal(state.steps.length, 1);
  assert.deepEqual(state.steps[0], { ...start, ...end });
  assert.deepEqual([state.title, state.status], ["題", "cancelled"]);
});

test("an error fails the response and keeps the text so far", () => {
  const state = new ResponseState();
  state.apply({ ...base, type: "response.output_text.delta", delta: "途中" });
  const error = { ...base, type: "response.error", message: "boom", code: 10009 };
  state.apply(error);
  assert.deepEqual([state.text, state.status, state.error], ["途中", "failed", error]);
});
