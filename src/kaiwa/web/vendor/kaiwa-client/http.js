// The HTTP edge of `KaiwaClient`: settings, URLs, the envelope, and the two kinds of request —
// a JSON call (`call`) and an event stream (`open`). Everything above it deals in parsed data.
//
// Every JSON answer is an envelope `{data, message, error_code, pagination}`; `call` returns what
// `parse(data, pagination)` makes of it, or throws the error the envelope (or status) names.

import { DEFAULT_RESUME } from "./cursor.js";
import { APIConnectionError, APITimeoutError, KaiwaError, errorFromAnswer } from "./errors.js";

export const DEFAULT_BASE_URL = "http://127.0.0.1:8000";
/** 90 s: the server pings every 15 s, and ends a silent answer itself after 90 s. */
export const DEFAULT_TIMEOUT = 90_000;
export const API_PREFIX = "/api/v1";
export const RESPONSE_ID_HEADER = "x-kaiwa-response-id";

/** One path segment: an id as text, quoted so that it can never change the path. */
export const seg = (value) => encodeURIComponent(String(value));

export class HttpCore {
  #fetch;
  #headers;

  constructor(options = {}) {
    const env = globalThis.process?.env ?? {};
    const base = String(options.baseUrl ?? env.KAIWA_BASE_URL ?? DEFAULT_BASE_URL);
    // Accept the base URL with or without the API prefix: both appear in examples.
    const url = new URL(base);
    let path = url.pathname.replace(/\/+$/, "");
    if (path.endsWith(API_PREFIX)) path = path.slice(0, -API_PREFIX.length);
    /** The API's root, `…/api/v1`. */
    this.baseUrl = `${url.origin}${path}${API_PREFIX}`;
    /** Sent as `x-api-key`; may be null for a page that only reads events with a resume token. */
    this.apiKey = options.apiKey ?? env.KAIWA_API_KEY ?? null;
    /** Milliseconds: how long a call may wait for its answer, and a stream for its next bytes. */
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT;
    this.resume = Object.freeze({ ...DEFAULT_RESUME, ...options.resume });
    this.#headers = { ...options.headers };
    const custom = options.fetch;
    this.#fetch = custom ?? ((input, init) => globalThis.fetch(input, init));
  }

  url(path, query) {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    return url.toString();
  }

  /** The fetch `init` of a request spec `{method, path, query, json, form, headers, auth}`. */
  init(spec, accept) {
    const headers = { accept, ...this.#headers, ...spec.headers };
    if (spec.auth !== false && this.apiKey) headers["x-api-key"] = this.apiKey;
    let body;
    if (spec.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(spec.json);
    } else if (spec.form !== undefined) {
      body = spec.form; // FormData: fetch writes the multipart boundary itself
    }
    return { method: spec.method, headers, body };
  }

  /** A JSON call: the envelope's data as `parse` reads it, or the error it names. */
  async call(spec, parse = (data) => data) {
    const controller = new AbortController();
    const timeout = spec.timeout ?? this.timeout;
    let timedOut = false;
    const timer = unref(
      setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeout),
    );
    const unlink = link(spec.signal, controller);
    const what = `${spec.method} ${spec.path}`;
    let response;
    let text;
    try {
      response = await this.#fetch(this.url(spec.path, spec.query), {
        ...this.init(spec, "application/json"),
        signal: controller.signal,
      });
      text = await response.text();
    } catch (cause) {
      if (timedOut) throw new APITimeoutError(`${what}: no answer within ${timeout} ms`, { cause });
      if (spec.signal?.aborted) throw spec.signal.reason;
      throw new APIConnectionError(`${what} failed: ${cause?.message ?? cause}`, { cause });
    } finally {
      clearTimeout(timer);
      unlink();
    }
    const body = parseJson(text);
    if (!response.ok || !isEnvelope(body) || (body.error_code ?? 0) !== 0) {
      if (response.ok && !isEnvelope(body)) {
        throw new KaiwaError(`Unexpected answer from ${what}: ${text.slice(0, 200)}`);
      }
      throw errorFromAnswer(response.status, response.statusText, body, response.headers);
    }
    return parse(body.data, body.pagination ?? null);
  }

  /**
   * Send a request whose answer is an event stream, on `controller`'s signal; returns the
   * `Response` once its headers arrived, or throws the error the server answered instead.
   * Network failures surface as the fetch's own error (the stream classifies them).
   */
  async open(spec, controller) {
    const response = await this.#fetch(this.url(spec.path, spec.query), {
      ...this.init(spec, "text/event-stream"),
      signal: controller.signal,
    });
    const type = response.headers.get("content-type") ?? "";
    if (response.status === 200 && type.startsWith("text/event-stream")) return response;
    const text = await response.text().catch(() => "");
    const body = parseJson(text);
    if (!response.ok || (isEnvelope(body) && (body.error_code ?? 0) !== 0)) {
      throw errorFromAnswer(response.status, response.statusText, body, response.headers);
    }
    throw new KaiwaError(
      `Expected an event stream, got HTTP ${response.status} (${type || "no content type"})`,
    );
  }
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function isEnvelope(body) {
  return body !== null && typeof body === "object" && !Array.isArray(body);
}

/** Abort `controller` when `signal` aborts; returns the function that undoes the link. */
export function link(signal, controller) {
  if (!signal) return () => {};
  if (signal.aborted) {
    controller.abort(signal.reason);
    return () => {};
  }
  const onAbort = () => controller.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** A timer that does not keep Node's event loop alive on its own (no-op in browsers). */
export function unref(timer) {
  if (typeof timer === "object" && typeof timer?.unref === "function") timer.unref();
  return timer;
}
