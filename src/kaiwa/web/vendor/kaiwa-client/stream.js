// `KaiwaStream`: one response's events, parsed, each exactly once, resumed across dropped
// connections.
//
//     const stream = client.messages.stream(chatId, { message: "営業時間は?", agentId });
//     for await (const event of stream) {
//       if (event.type === "response.output_text.delta") process.stdout.write(event.delta);
//     }
//     const text = await stream.finalText();
//
// The request goes out on the first iteration (or `await stream.open()`), so errors found before
// the stream starts (404, 409, 429, …) are thrown there. When the connection drops mid-answer — a
// network error, no bytes for the read timeout, or a body that ends without `[DONE]` — the stream
// reconnects to the response's events endpoint after the last event it delivered and carries on;
// the caller only ever sees a gap as a pause. A `response.error` event is thrown (as its
// `StreamError`) after every event before it was delivered.
//
// Stopping: `stream.cancel()`, or aborting the `signal` given to the call, sends
// `POST …/cancel` (as soon as the response id is known); the iteration then ends as usual with
// `completed`, status `cancelled`. Breaking out of `for await` or `close()` only drops the
// connection — the answer goes on on the server — and iterating again reattaches where it left off.
//
// The bookkeeping (decode, deduplicate, fold, when to reconnect) is `StreamCursor`; what is here
// is the I/O loop.

import { APIConnectionError, APIError, APITimeoutError, KaiwaError } from "./errors.js";
import { RESPONSE_ID_HEADER, seg, unref } from "./http.js";

/** After an abort, how long the stream waits for the server's `completed` before giving up. */
const CANCEL_GRACE = 10_000;
const CLOSED = Symbol("closed");

export class KaiwaStream {
  #http;
  #initial;
  #cursor;
  #token;
  #signal;
  #cancelCall;
  #opening = null; // the first connection, once asked for
  #pending = null; // a connection opened and not read yet
  #controller = null; // the current connection's
  #iterating = false;
  #closed = false;
  #stopped = false;
  #stopReason = undefined;
  #cancelWaiters = [];
  #onAbort = null;
  #graceTimer = null;

  /** Made by the client's methods (`client.messages.stream(…)`), not directly. */
  constructor(http, { initial, cursor, token = null, signal = null, cancel }) {
    this.#http = http;
    this.#initial = initial;
    this.#cursor = cursor;
    this.#token = token;
    this.#signal = signal;
    this.#cancelCall = cancel;
  }

  get chatId() {
    return this.#cursor.chatId;
  }

  /** Known once the stream is open (from `X-Kaiwa-Response-Id`, else the first event). */
  get responseId() {
    return this.#cursor.responseId;
  }

  /** The id of the last event delivered: 1, 2, 3… within the response. */
  get lastEventId() {
    return this.#cursor.lastEventId;
  }

  /** Everything the events said so far: text, steps, usage, title, status, error. */
  get state() {
    return this.#cursor.state;
  }

  /** From `response.created`: lets a page reattach (`client.responses.events`) without the key. */
  get resumeToken() {
    return this.#cursor.resumeToken;
  }

  /** The terminal event (or `[DONE]`) has arrived. */
  get done() {
    return this.#cursor.finished;
  }

  /** Send the request (once) and wait for the stream's headers; throws what the server refused. */
  open() {
    this.#opening ??= this.#openFirst();
    return this.#opening.then(() => this);
  }

  [Symbol.asyncIterator]() {
    return this.#iterate();
  }

  /**
   * The answer's text, once the stream has ended (reads what is left of it first). Throws the
   * stream's `StreamError` if the answer failed; a cancelled answer's text is the part written
   * before the stop.
   */
  async finalText() {
    for await (const _ of this); // what is left of it
    return this.#cursor.state.text;
  }

  /**
   * Stop the answer (`POST …/cancel`); keep iterating to read its end. Before the response id is
   * known the request waits for it.
   */
  cancel() {
    const responseId = this.#cursor.responseId;
    if (responseId !== null) return this.#cancelCall(this.chatId, responseId);
    return new Promise((resolve, reject) => this.#cancelWaiters.push({ resolve, reject }));
  }

  /** Drop the connection; the answer goes on on the server unless it was cancelled. */
  close() {
    this.#closed = true;
    this.#pending = null;
    this.#controller?.abort();
  }

  async #openFirst() {
    if (this.#signal?.aborted) throw this.#signal.reason; // nothing was sent
    this.#watchSignal();
    try {
      this.#pending = await this.#connect(this.#initial);
    } catch (error) {
      this.#failWaiters(error);
      this.#release();
      if (error instanceof APIConnectionError) {
        throw new error.constructor(`Could not open the stream: ${error.message}`, {
          cause: error.cause,
        });
      }
      throw error;
    }
  }

  async *#iterate() {
    if (this.#iterating) throw new KaiwaError("This stream is already being iterated");
    this.#iterating = true;
    this.#closed = false;
    // Stays false when the caller leaves the loop early: the stream may be iterated again, and
    // its signal still stops the answer.
    let ended = false;
    try {
      let response = await this.#first();
      while (response !== null) {
        const failure = yield* this.#read(response);
        response = failure === CLOSED ? null : await this.#reconnect(failure);
      }
      ended = true;
      if (this.#cursor.error) throw this.#cursor.error;
    } catch (error) {
      ended = true;
      throw error;
    } finally {
      this.#iterating = false;
      this.#controller?.abort();
      if (ended) {
        this.#failWaiters(new KaiwaError("The stream ended before its response id was known"));
        this.#release();
      }
    }
  }

  async #first() {
    await this.open();
    const response = this.#pending;
    this.#pending = null;
    if (response !== null) return response;
    if (this.#cursor.finished) return null;
    // Iterated again after a `break` or `close()`: reattach where the last iteration stopped.
    if (this.#cursor.responseId === null) {
      throw new KaiwaError("The stream was closed before its response id was known");
    }
    this.#cursor.decoder.flush();
    try {
      return await this.#connect(this.#resumeSpec());
    } catch (error) {
      return this.#reconnect(this.#retryable(error));
    }
  }

  /** Hands out the events of one connection; returns why it ended (null: the body ended). */
  async *#read(response) {
    const reader = response.body.getReader();
    for (;;) {
      let chunk;
      try {
        chunk = await this.#next(reader);
      } catch (error) {
        if (this.#stopped) throw this.#stopReason;
        if (this.#closed) return CLOSED;
        if (error instanceof KaiwaError) return error;
        return new APIConnectionError(`The connection dropped: ${error?.message ?? error}`, {
          cause: error,
        });
      }
      if (chunk.done) return null;
      for (const event of this.#cursor.feed(chunk.value)) {
        this.#settleCancel();
        yield event;
      }
      this.#settleCancel();
    }
  }

  /** The next chunk, or a rejection once the read timeout passes without one. */
  #next(reader) {
    const timeout = this.#http.timeout;
    return new Promise((resolve, reject) => {
      const timer = unref(
        setTimeout(() => {
          reject(new APITimeoutError(`No data for ${timeout} ms`));
          this.#controller?.abort();
        }, timeout),
      );
      reader
        .read()
        .then(resolve, reject)
        .finally(() => clearTimeout(timer));
    });
  }

  /** The next connection, after the backoff; null when the stream is over. */
  async #reconnect(failure) {
    for (;;) {
      if (this.#stopped) throw this.#stopReason;
      if (this.#closed) return null;
      const delay = this.#cursor.ended(failure); // throws when it is time to give up
      if (delay === null) return null;
      await sleep(delay);
      if (this.#stopped) throw this.#stopReason;
      if (this.#closed) return null;
      try {
        return await this.#connect(this.#resumeSpec());
      } catch (error) {
        failure = this.#retryable(error);
      }
    }
  }

  #retryable(error) {
    if (this.#stopped) throw this.#stopReason;
    if (error instanceof APIError || error instanceof APIConnectionError) return error;
    throw error;
  }

  /** Open one connection (headers within the timeout); network failures as `APIConnectionError`. */
  async #connect(spec) {
    const controller = new AbortController();
    this.#controller = controller;
    const timeout = this.#http.timeout;
    let timedOut = false;
    const timer = unref(
      setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeout),
    );
    try {
      const response = await this.#http.open(spec, controller);
      this.#cursor.opened(response.headers.get(RESPONSE_ID_HEADER));
      this.#settleCancel();
      return response;
    } catch (cause) {
      if (this.#stopped) throw this.#stopReason;
      if (cause instanceof KaiwaError) throw cause;
      if (timedOut) throw new APITimeoutError(`no answer within ${timeout} ms`, { cause });
      throw new APIConnectionError(`${cause?.message ?? cause}`, { cause });
    } finally {
      clearTimeout(timer);
    }
  }

  #resumeSpec() {
    const { chatId, responseId, lastEventId } = this.#cursor;
    const path = `/chats/${seg(chatId)}/responses/${seg(responseId)}/events`;
    if (this.#token !== null) {
      // No custom header at all: a browser sends this without a CORS preflight.
      return {
        method: "GET",
        path,
        query: { token: this.#token, after: lastEventId },
        auth: false,
      };
    }
    const headers = { "cache-control": "no-cache" };
    if (lastEventId !== null) headers["last-event-id"] = String(lastEventId);
    return { method: "GET", path, headers };
  }

  #watchSignal() {
    const signal = this.#signal;
    if (!signal) return;
    this.#onAbort = () => {
      if (this.#cursor.finished) return;
      const reason = signal.reason;
      this.#graceTimer = unref(setTimeout(() => this.#stop(reason), CANCEL_GRACE));
      this.cancel().catch(() => this.#stop(reason));
    };
    signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Give up on a graceful end: drop the connection and throw `reason` from the iteration. */
  #stop(reason) {
    if (this.#stopped || this.#cursor.finished) return;
    this.#stopped = true;
    this.#stopReason = reason;
    this.#controller?.abort();
  }

  #settleCancel() {
    const responseId = this.#cursor.responseId;
    if (this.#cancelWaiters.length === 0 || responseId === null) return;
    const waiters = this.#cancelWaiters;
    this.#cancelWaiters = [];
    const result = this.#cancelCall(this.chatId, responseId);
    for (const { resolve, reject } of waiters) result.then(resolve, reject);
  }

  #failWaiters(error) {
    const waiters = this.#cancelWaiters;
    this.#cancelWaiters = [];
    for (const { reject } of waiters) reject(error);
  }

  #release() {
    if (this.#onAbort) this.#signal.removeEventListener("abort", this.#onAbort);
    this.#onAbort = null;
    clearTimeout(this.#graceTimer);
  }
}

if (typeof Symbol.asyncDispose === "symbol") {
  // `await using stream = client.messages.stream(…)` drops the connection at the block's end.
  KaiwaStream.prototype[Symbol.asyncDispose] = async function dispose() {
    this.close();
  };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
