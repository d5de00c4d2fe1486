// `StreamCursor`: a stream's bookkeeping across its connections, with no I/O (a port of
// kaiwa.client._base.StreamCursor). It decodes, deduplicates and folds events, and says when and
// where to reconnect:
//
//     const cursor = new StreamCursor({ chatId: 12, policy: { attempts: 5, backoff: 500 } });
//     cursor.opened(responseIdHeader);         // each connection: a new decoder
//     for (const event of cursor.feed(chunk))  // parsed events, never one twice
//       ...
//     const delay = cursor.ended(failure);     // null: over; else reconnect after `delay` ms
//
// Deliberate oddities: the cursor resumes after the id of the last *delivered* event, not after the
// decoder's `lastEventId`, which the `id:` line of a frame cut in half has already moved. Retry
// budgets restart whenever a connection delivers a new event, so a long answer survives any number
// of cuts as long as each reconnection makes progress.

import { SSEDecoder } from "./sse.js";
import { ResponseState } from "./state.js";
import {
  APIConnectionError,
  APIError,
  APITimeoutError,
  KaiwaError,
  RateLimitedError,
  errorForEvent,
} from "./errors.js";

export const DEFAULT_RESUME = Object.freeze({ attempts: 5, backoff: 500, maxBackoff: 8000 });

/** The event types this client knows; others (from a newer server) are skipped. */
export const EVENT_TYPES = Object.freeze([
  "response.created",
  "response.reasoning_step.start",
  "response.reasoning_step.end",
  "response.output_text.delta",
  "response.chat.title.updated",
  "response.output_text.completed",
  "response.error",
]);
const KNOWN = new Set(EVENT_TYPES);
const DIGITS = /^[0-9]+$/;

/** Milliseconds before reconnection number `attempt` (1, 2, 3…): doubled each time, capped. */
export function resumeDelay(policy, attempt) {
  return Math.min(policy.maxBackoff, policy.backoff * 2 ** (attempt - 1));
}

export class StreamCursor {
  constructor({ chatId, policy = DEFAULT_RESUME, responseId = null, after = null }) {
    this.chatId = chatId;
    this.responseId = responseId;
    this.policy = { ...DEFAULT_RESUME, ...policy };
    /** The id of the last event delivered (or the cursor the stream started after). */
    this.lastEventId = after;
    this.state = new ResponseState();
    /** The `response.error` that ended the stream, as the error to throw. */
    this.error = null;
    /** The terminal event or `[DONE]` has arrived: nothing is left to resume. */
    this.finished = false;
    /** From `response.created`: reads this response's events without the API key. */
    this.resumeToken = null;
    this.failures = 0;
    this.deliveredUnnumbered = false;
    this.decoder = new SSEDecoder();
  }

  /** A connection answered with an event stream: frames start afresh, a cut one is forgotten. */
  opened(responseIdHeader = null) {
    this.decoder = new SSEDecoder();
    this.responseId ??= responseIdHeader || null;
  }

  /**
   * The new events in these bytes. A `response.error` is kept as `error`, not yielded.
   * Lazy: each event reaches `state` and `lastEventId` as it is handed out, so both describe
   * exactly what the caller has seen.
   */
  *feed(chunk) {
    for (const sse of this.decoder.decode(chunk)) {
      const event = this.#take(sse);
      if (event !== null) yield event;
    }
  }

  /**
   * A body ended, cleanly or with `failure`, or a reconnection failed. Returns null when the
   * stream is over, else the milliseconds to wait before reconnecting. Throws a non-retryable
   * `APIError` as it is, and `APIConnectionError` once resuming is impossible or the attempts
   * are used up.
   */
  ended(failure) {
    this.decoder.flush();
    if (this.finished) return null;
    if (failure instanceof APIError && !retryable(failure)) throw failure;
    this.failures += 1;
    const reason = describe(failure);
    if (this.responseId === null || this.deliveredUnnumbered) {
      throw gaveUp(failure, `The stream broke off and cannot be resumed (${reason})`);
    }
    const { attempts, maxBackoff } = this.policy;
    if (this.failures > attempts) {
      throw gaveUp(
        failure,
        `The stream broke off and ${attempts} attempts to resume it failed (last: ${reason})`,
      );
    }
    let delay = resumeDelay(this.policy, this.failures);
    if (failure instanceof RateLimitedError && failure.retryAfter !== null) {
      delay = Math.max(delay, Math.min(failure.retryAfter * 1000, maxBackoff));
    }
    return delay;
  }

  #take(sse) {
    if (sse.data === "[DONE]") {
      this.finished = true;
      return null;
    }
    if (this.finished) return null;
    const eventId = sse.id !== null && DIGITS.test(sse.id) ? Number(sse.id) : null;
    const last = this.lastEventId;
    if (eventId !== null && last !== null && eventId <= last) {
      return null; // replayed by a resume: the caller has it already
    }
    const event = parse(sse.data);
    if (eventId !== null) this.lastEventId = eventId;
    else this.deliveredUnnumbered = true;
    if (event === null) return null;
    // The SSE id travels with the event without being part of its JSON.
    Object.defineProperty(event, "id", { value: eventId, enumerable: false });
    this.failures = 0;
    this.state.apply(event);
    this.responseId ??= event.response_id ?? null;
    if (event.type === "response.created" && typeof event.resume_token === "string") {
      this.resumeToken = event.resume_token;
    }
    if (event.type === "response.error") {
      this.error = errorForEvent(event);
      this.finished = true;
      return null;
    }
    if (event.type === "response.output_text.completed") this.finished = true;
    return event;
  }
}

/** The event, or null for an event type this client does not know (a newer server's). */
function parse(data) {
  let event;
  try {
    event = JSON.parse(data);
  } catch (cause) {
    throw new KaiwaError(`Malformed event in the stream: ${JSON.stringify(data.slice(0, 200))}`, {
      cause,
    });
  }
  if (event === null || typeof event !== "object" || typeof event.type !== "string") {
    throw new KaiwaError(`Malformed event in the stream: ${JSON.stringify(data.slice(0, 200))}`);
  }
  return KNOWN.has(event.type) ? event : null;
}

function retryable(error) {
  return error instanceof RateLimitedError || (error.status ?? 0) >= 500;
}

function describe(failure) {
  if (failure === null || failure === undefined) return "the body ended before [DONE]";
  return `${failure.name ?? "Error"}: ${failure.message ?? failure}`;
}

function gaveUp(failure, message) {
  const options = failure ? { cause: failure } : undefined;
  if (failure instanceof APITimeoutError) return new APITimeoutError(message, options);
  return new APIConnectionError(message, options);
}
