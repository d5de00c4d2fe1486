// Every error the client throws, in one tree (the Python client's, kaiwa.client._exceptions):
//
//     KaiwaError                       anything the client throws on purpose
//     ├── APIError                     the server answered with an error: .status, .code, .message
//     │   ├── BadRequestError          400 · 10006  validation (the message names the field)
//     │   ├── PermissionDeniedError    401/403 · 10001  bad key, or a chat key on management
//     │   │   └── ClientUserNotAllowedError   403 · 14103  external_user_id not on the whitelist
//     │   ├── NotFoundError            404 · 10003
//     │   ├── ConflictError            409 · 10004  a response already runs on the chat
//     │   ├── PayloadTooLargeError     413 · 10011
//     │   ├── RateLimitedError         429 · 10007  .retryAfter (seconds, from `Retry-After`)
//     │   ├── UpstreamError            502 · 10009  the model provider failed
//     │   ├── ServerError              500 · 10005, and any other 5xx
//     │   └── StreamError              `response.error` inside a stream: .status is null, .event
//     └── APIConnectionError           no answer: network failure, or resume attempts used up
//         └── APITimeoutError          the read timeout (90 s by default) expired
//
// An in-stream error is thrown by the stream's iterator once every event before it was delivered.
//
// Deliberate oddity: a `StreamError` whose code has a family before the stream (10005, 10009,
// 10011) is an instance of that family's class too, so `instanceof UpstreamError` catches a
// provider failure whether it came as a 502 or as code 10009 inside the stream. JavaScript has no
// multiple inheritance: those errors are built from the family's class and carry a brand that
// `StreamError[Symbol.hasInstance]` recognises.

export const ErrorCode = Object.freeze({
  OK: 0,
  PERMISSION_DENIED: 10001,
  NOT_FOUND: 10003,
  CONFLICT: 10004,
  SERVER_ERROR: 10005,
  BAD_REQUEST: 10006,
  RATE_LIMITED: 10007,
  TIMEOUT: 10008,
  UPSTREAM_ERROR: 10009,
  CANCELLED: 10010,
  PAYLOAD_TOO_LARGE: 10011,
  CLIENT_USER_NOT_ALLOWED: 14103,
});

const STREAM_BRAND = Symbol("kaiwa.StreamError");

/** The root: catch it to catch every failure of a call. */
export class KaiwaError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The server answered with an error envelope (or, for a `StreamError`, an error event). */
export class APIError extends KaiwaError {
  constructor(message, { code, status, cause, errors } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    /** The envelope's `error_code` (see `ErrorCode`). */
    this.code = code ?? 0;
    /** The HTTP status; null for an error reported inside a stream. */
    this.status = status ?? null;
    /** [ext] Each bad field and why (`{field, reason}`), when the server lists them. */
    this.errors = errors ?? [];
  }

  toString() {
    const where = this.status !== null ? `HTTP ${this.status}` : "in stream";
    return `${this.name}: ${this.message} (error_code ${this.code}, ${where})`;
  }
}

export class BadRequestError extends APIError {}
export class PermissionDeniedError extends APIError {}
export class ClientUserNotAllowedError extends PermissionDeniedError {}
export class NotFoundError extends APIError {}
export class ConflictError extends APIError {}
export class PayloadTooLargeError extends APIError {}
export class UpstreamError extends APIError {}
export class ServerError extends APIError {}

export class RateLimitedError extends APIError {
  constructor(message, { retryAfter = null, ...rest } = {}) {
    super(message, rest);
    /** Seconds to wait before trying again, from the `Retry-After` header (null if absent). */
    this.retryAfter = retryAfter;
  }
}

/** A `response.error` event: the answer failed after the stream had started. */
export class StreamError extends APIError {
  constructor(event) {
    super(event.message, { code: event.code, status: null });
    brand(this, event);
  }

  static [Symbol.hasInstance](value) {
    if (this === StreamError && value?.[STREAM_BRAND] === true) return true;
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }
}

/** No usable answer: the connection failed, and for a stream every resume attempt too. */
export class APIConnectionError extends KaiwaError {}
export class APITimeoutError extends APIConnectionError {}

function brand(error, event) {
  Object.defineProperty(error, STREAM_BRAND, { value: true });
  /** The `response.error` event itself. */
  error.event = event;
  error.responseId = event.response_id;
  error.chatId = event.chat_id;
}

// The in-stream twins of the families that exist before a stream too.
class StreamServerError extends ServerError {
  constructor(event) {
    super(event.message, { code: event.code, status: null });
    brand(this, event);
    this.name = "StreamError";
  }
}
class StreamUpstreamError extends UpstreamError {
  constructor(event) {
    super(event.message, { code: event.code, status: null });
    brand(this, event);
    this.name = "StreamError";
  }
}
class StreamPayloadTooLargeError extends PayloadTooLargeError {
  constructor(event) {
    super(event.message, { code: event.code, status: null });
    brand(this, event);
    this.name = "StreamError";
  }
}

const FAMILIES = new Map([
  [ErrorCode.PERMISSION_DENIED, PermissionDeniedError],
  [ErrorCode.NOT_FOUND, NotFoundError],
  [ErrorCode.CONFLICT, ConflictError],
  [ErrorCode.SERVER_ERROR, ServerError],
  [ErrorCode.BAD_REQUEST, BadRequestError],
  [ErrorCode.RATE_LIMITED, RateLimitedError],
  [ErrorCode.UPSTREAM_ERROR, UpstreamError],
  [ErrorCode.PAYLOAD_TOO_LARGE, PayloadTooLargeError],
  [ErrorCode.CLIENT_USER_NOT_ALLOWED, ClientUserNotAllowedError],
]);

// The family of an error without a known code (a proxy's HTML page, an older server).
const STATUS_FAMILIES = new Map([
  [400, BadRequestError],
  [401, PermissionDeniedError],
  [403, PermissionDeniedError],
  [404, NotFoundError],
  [409, ConflictError],
  [413, PayloadTooLargeError],
  [429, RateLimitedError],
  [502, UpstreamError],
]);

const STREAM_FAMILIES = new Map([
  [ErrorCode.SERVER_ERROR, StreamServerError],
  [ErrorCode.UPSTREAM_ERROR, StreamUpstreamError],
  [ErrorCode.PAYLOAD_TOO_LARGE, StreamPayloadTooLargeError],
]);

/** The error for an error answer: by its code, else by its HTTP status. */
export function errorForStatus(status, code, message, { retryAfter = null, errors = [] } = {}) {
  let Family = FAMILIES.get(code) ?? STATUS_FAMILIES.get(status);
  Family ??= status >= 500 ? ServerError : APIError;
  if (Family === RateLimitedError)
    return new RateLimitedError(message, { code, status, retryAfter });
  return new Family(message, { code, status, errors });
}

/** The error for a `response.error` event. */
export function errorForEvent(event) {
  const Family = STREAM_FAMILIES.get(event.code) ?? StreamError;
  return new Family(event);
}

/**
 * The error for an HTTP answer that is not a success, from its status, its body (already read,
 * JSON-decoded when possible) and its headers; works for non-JSON bodies too.
 */
export function errorFromAnswer(status, statusText, body, headers) {
  let code = 0;
  let message = null;
  let errors = [];
  if (body !== null && typeof body === "object") {
    if (Number.isInteger(body.error_code)) code = body.error_code;
    if (typeof body.message === "string") message = body.message;
    if (Array.isArray(body.errors)) {
      errors = body.errors.filter(
        (item) => typeof item?.field === "string" && typeof item?.reason === "string",
      );
    }
  }
  message ??= statusText || `HTTP ${status}`;
  const retryAfter = parseRetryAfter(headers?.get("retry-after") ?? null);
  return errorForStatus(status >= 400 ? status : 500, code, message, { retryAfter, errors });
}

/**
 * Seconds from a `Retry-After` header: a number of seconds, or an HTTP date.
 *
 *     parseRetryAfter("7")                                                  // 7
 *     parseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", Date.UTC(2015, 9, 21, 7, 28))  // 30
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value === null || value === undefined || !String(value).trim()) return null;
  const text = String(value).trim();
  const seconds = Number(text);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.max(0, (when - now) / 1000);
}
