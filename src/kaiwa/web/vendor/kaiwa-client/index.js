// kaiwa-client: the JavaScript client of the kaiwa (and Codeer chat v1) API, for browsers and
// Node ≥ 18, with no dependencies.
//
//     import { KaiwaClient } from "kaiwa-client";
//
//     const client = new KaiwaClient({ baseUrl: "http://127.0.0.1:8000", apiKey });
//     const chat = await client.chats.create({ name: "support", agentId });
//     for await (const event of client.messages.stream(chat.id, { message: "営業時間は?", agentId })) {
//       if (event.type === "response.output_text.delta") process.stdout.write(event.delta);
//     }
//     const text = await client.messages.send(chat.id, { message: "…", agentId });  // not streamed
//
// Streams resume by themselves after a dropped connection (`resume` option); errors form one tree
// under `KaiwaError` (see errors.js).

import { HttpCore } from "./http.js";
import {
  Agents,
  Chats,
  Feedback,
  Files,
  Forms,
  KnowledgeBases,
  Messages,
  Responses,
} from "./resources.js";

export class KaiwaClient {
  /**
   * Options: `baseUrl` (with or without `/api/v1`; default `KAIWA_BASE_URL` in Node, else
   * http://127.0.0.1:8000), `apiKey` (default `KAIWA_API_KEY` in Node), `timeout` (ms, 90 000),
   * `resume` (`{attempts, backoff, maxBackoff}`, ms), `headers`, `fetch` (a replacement for
   * `globalThis.fetch`, e.g. for proxies or tests).
   */
  constructor(options = {}) {
    /** @internal */
    this._http = new HttpCore(options);
    this.chats = new Chats(this);
    this.messages = new Messages(this);
    this.feedback = new Feedback(this);
    this.responses = new Responses(this);
    this.forms = new Forms(this);
    this.files = new Files(this);
    this.agents = new Agents(this);
    this.knowledgeBases = new KnowledgeBases(this);
  }

  /** The API's root, `…/api/v1`. */
  get baseUrl() {
    return this._http.baseUrl;
  }
}

export { KaiwaStream } from "./stream.js";
export { SSEDecoder } from "./sse.js";
export { ResponseState } from "./state.js";
export { EVENT_TYPES } from "./cursor.js";
export { DEFAULT_TIMEOUT } from "./http.js";
export {
  APIConnectionError,
  APIError,
  APITimeoutError,
  BadRequestError,
  ClientUserNotAllowedError,
  ConflictError,
  ErrorCode,
  KaiwaError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitedError,
  ServerError,
  StreamError,
  UpstreamError,
} from "./errors.js";
