// The error tree: families by code, then by status; in-stream errors are their family too.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  APIError,
  BadRequestError,
  ClientUserNotAllowedError,
  ConflictError,
  KaiwaError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitedError,
  ServerError,
  StreamError,
  UpstreamError,
} from "../src/index.js";
import { errorForEvent, errorForStatus, errorFromAnswer, parseRetryAfter } from "../src/errors.js";

test("an error answer maps to its family by code, else by status", () => {
  const cases = [
    [401, 10001, PermissionDeniedError],
    [403, 10001, PermissionDeniedError],
    [403, 14103, ClientUserNotAllowedError],
    [404, 10003, NotFoundError],
    [409, 10004, ConflictError],
    [413, 10011, PayloadTooLargeError],
    [429, 10007, RateLimitedError],
    [400, 10006, BadRequestError],
    [500, 10005, ServerError],
    [502, 10009, UpstreamError],
    [404, 0, NotFoundError],
    [503, 0, ServerError],
    [418, 0, APIError],
  ];
  for (const [status, code, Family] of cases) {
    const error = errorForStatus(status, code, "m");
    assert.equal(error.constructor, Family, `${status}/${code}`);
    assert.ok(error instanceof APIError && error instanceof KaiwaError && error instanceof Error);
    assert.deepEqual([error.status, error.code, error.message], [status, code, "m"]);
    assert.equal(error instanceof StreamError, false);
  }
});

test("a rate-limited answer carries Retry-After in seconds", () => {
  const headers = new Headers({ "retry-after": "7" });
  const error = errorFromAnswer(
    429,
    "Too Many Requests",
    { error_code: 10007, message: "slow down" },
    headers,
  );
  assert.ok(error instanceof RateLimitedError);
  assert.equal(error.retryAfter, 7);
  assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", Date.UTC(2015, 9, 21, 7, 28)), 30);
  assert.equal(parseRetryAfter("soon"), null);
  assert.equal(parseRetryAfter(null), null);
});

test("a non-JSON error page maps by status with its status text", () => {
  const error = errorFromAnswer(502, "Bad Gateway", null, new Headers());
  assert.ok(error instanceof UpstreamError);
  assert.equal(error.message, "Bad Gateway");
});

test("an in-stream error is a StreamError and, for codes with a family, that family too", () => {
  const event = {
    type: "response.error",
    response_id: "r",
    chat_id: 3,
    message: "boom",
    code: 10009,
  };
  const upstream = errorForEvent(event);
  assert.ok(upstream instanceof StreamError);
  assert.ok(upstream instanceof UpstreamError);
  assert.ok(upstream instanceof APIError);
  assert.deepEqual(
    [upstream.status, upstream.code, upstream.responseId, upstream.chatId],
    [null, 10009, "r", 3],
  );
  assert.equal(upstream.event, event);
  assert.equal(upstream.name, "StreamError");

  const timeout = errorForEvent({ ...event, code: 10008 });
  assert.equal(timeout.constructor, StreamError);
  assert.equal(timeout instanceof UpstreamError, false);
  assert.equal(errorForEvent({ ...event, code: 10005 }) instanceof ServerError, true);
  assert.equal(errorForEvent({ ...event, code: 10011 }) instanceof PayloadTooLargeError, true);
  assert.equal(String(timeout), "StreamError: boom (error_code 10008, in stream)");
});

test("a refusal that lists its bad fields carries them, and only well-formed ones", () => {
  const body = {
    data: null,
    message: "values.name: required; values.day: must be a date written YYYY-MM-DD",
    error_code: 10006,
    errors: [{ field: "name", reason: "required" }, { field: "day", reason: "date" }, { field: 1 }],
  };
  const error = errorFromAnswer(400, "Bad Request", body, new Headers());
  assert.ok(error instanceof BadRequestError);
  assert.deepEqual(error.errors, [
    { field: "name", reason: "required" },
    { field: "day", reason: "date" },
  ]);
  const plain = errorFromAnswer(404, "Not Found", { message: "no", error_code: 10003 }, new Headers());
  assert.deepEqual(plain.errors, []);
});
