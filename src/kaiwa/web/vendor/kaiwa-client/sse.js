// Server-Sent Events: a push-style incremental decoder, ported from kaiwa.protocol.sse.
//
// It transcribes the WHATWG "interpret an event stream" steps
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
// and does no I/O: feed it bytes as they arrive with `decode(chunk)`, get complete events back,
// call `flush()` at the end of the stream. Multi-byte UTF-8 characters and CRLF pairs may be split
// anywhere between chunks.
//
//     const decoder = new SSEDecoder();
//     decoder.decode(bytes);   // -> [{event, data, id, retry}, ...]
//     decoder.flush();         // end of stream: an unfinished event is discarded

const LINE_END = /\r\n|\r|\n/;
const DIGITS = /^[0-9]+$/;

/** The decoder of one connection's body: bytes in, `ServerSentEvent`s out. */
export class SSEDecoder {
  // `fatal: false` replaces invalid bytes; the default `ignoreBOM: false` drops a leading BOM,
  // as the spec asks.
  #text = new TextDecoder("utf-8");
  #partial = []; // the current line so far, in pieces
  #pendingCR = false;
  #event = "";
  #data = [];
  #lastEventId = null;
  #retry = null;

  /** The last `id:` seen on this stream (it may belong to a frame not finished yet). */
  get lastEventId() {
    return this.#lastEventId;
  }

  /** The events completed by these bytes (a `Uint8Array` or `ArrayBuffer`). */
  decode(chunk) {
    return this.#feed(this.#text.decode(chunk, { stream: true }));
  }

  /** End of stream: a trailing event without its blank line is discarded, per the spec. */
  flush() {
    this.#feed(this.#text.decode());
    this.#partial = [];
    this.#pendingCR = false;
    this.#event = "";
    this.#data = [];
    return [];
  }

  #feed(text) {
    if (this.#pendingCR && text) {
      // A CR ended the previous chunk; a LF starting this one belongs to it.
      this.#pendingCR = false;
      if (text[0] === "\n") text = text.slice(1);
    }
    if (!text) return [];
    // Only the new text is scanned, so a long line arriving in many chunks stays linear.
    const lines = text.split(LINE_END);
    if (lines.length === 1) {
      this.#partial.push(text);
      return [];
    }
    lines[0] = this.#partial.join("") + lines[0];
    this.#partial = [lines.pop()];
    this.#pendingCR = text.endsWith("\r");
    const events = [];
    for (const line of lines) {
      const event = this.#line(line);
      if (event !== null) events.push(event);
    }
    return events;
  }

  #line(line) {
    if (!line) return this.#dispatch();
    // A comment: kaiwa's `: ping` keep-alive is one, a line alone that ends no event.
    if (line[0] === ":") return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "data") {
      this.#data.push(value);
    } else if (field === "event") {
      this.#event = value;
    } else if (field === "id") {
      if (!value.includes("\0")) this.#lastEventId = value;
    } else if (field === "retry" && DIGITS.test(value)) {
      this.#retry = Number(value);
    }
    return null;
  }

  #dispatch() {
    const event = this.#event;
    const data = this.#data;
    this.#event = "";
    this.#data = [];
    if (data.length === 0) return null;
    return {
      event: event || "message",
      data: data.join("\n"),
      id: this.#lastEventId,
      retry: this.#retry,
    };
  }
}
