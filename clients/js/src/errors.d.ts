// The error tree of errors.js (see the drawing at the top of that file).

import type { ResponseError } from "./events.js";

export declare const ErrorCode: {
  readonly OK: 0;
  readonly PERMISSION_DENIED: 10001;
  readonly NOT_FOUND: 10003;
  readonly CONFLICT: 10004;
  readonly SERVER_ERROR: 10005;
  readonly BAD_REQUEST: 10006;
  readonly RATE_LIMITED: 10007;
  readonly TIMEOUT: 10008;
  readonly UPSTREAM_ERROR: 10009;
  readonly CANCELLED: 10010;
  readonly PAYLOAD_TOO_LARGE: 10011;
  readonly CLIENT_USER_NOT_ALLOWED: 14103;
};

/** The root: catch it to catch every failure of a call. */
export declare class KaiwaError extends Error {
  constructor(message?: string, options?: { cause?: unknown });
}

/** The server answered with an error (an envelope, or a `response.error` event). */
/** [ext] One bad field of a request and why (`required`, `type`, `date`, `option`…). */
export interface FieldError {
  field: string;
  reason: string;
}

export declare class APIError extends KaiwaError {
  constructor(
    message: string,
    options?: { code?: number; status?: number | null; cause?: unknown; errors?: FieldError[] },
  );
  /** The envelope's `error_code` (see `ErrorCode`). */
  readonly code: number;
  /** The HTTP status; null for an error reported inside a stream. */
  readonly status: number | null;
  /** [ext] Each bad field and why, when the server lists them (a form's values); else empty. */
  readonly errors: FieldError[];
}

/** 400 · 10006: validation; the message names the field and the rule. */
export declare class BadRequestError extends APIError {}
/** 401/403 · 10001: a bad key, or a chat key on a management endpoint. */
export declare class PermissionDeniedError extends APIError {}
/** 403 · 14103: `external_user_id` not on the workspace's whitelist. */
export declare class ClientUserNotAllowedError extends PermissionDeniedError {}
/** 404 · 10003 */
export declare class NotFoundError extends APIError {}
/** 409 · 10004: a response already runs on the chat; a form already submitted. */
export declare class ConflictError extends APIError {}
/** 413 · 10011 (also in-stream code 10011). */
export declare class PayloadTooLargeError extends APIError {}
/** 502 · 10009: the model provider failed (also in-stream code 10009). */
export declare class UpstreamError extends APIError {}
/** 500 · 10005 and any other 5xx (also in-stream code 10005). */
export declare class ServerError extends APIError {}

/** 429 · 10007 */
export declare class RateLimitedError extends APIError {
  /** Seconds to wait before trying again, from `Retry-After` (null if absent). */
  readonly retryAfter: number | null;
}

/**
 * A `response.error` event, thrown by the stream's iterator after every event before it. For codes
 * 10005, 10009 and 10011 it is also a `ServerError`, `UpstreamError` or `PayloadTooLargeError`.
 */
export declare class StreamError extends APIError {
  constructor(event: ResponseError);
  readonly status: null;
  readonly event: ResponseError;
  readonly responseId: string;
  readonly chatId: number;
}

/** No usable answer: the connection failed, and for a stream every resume attempt too. */
export declare class APIConnectionError extends KaiwaError {}
/** The read timeout expired (no bytes for `timeout` ms). */
export declare class APITimeoutError extends APIConnectionError {}
