// The answer the page follows: one stream at a time, read into its view until it ends.
//
//     follower.claim(stream);                   // before `await stream.open()`: Stop works at once
//     await stream.open();                      // refused? `follower.release(stream)`
//     if (!follower.owns(stream)) return;       // another chat was opened meanwhile
//     await follower.follow(stream, view, { chatId, agentId });
//
// From `response.created` on, the answer's chat id, response id and resume token are kept in
// sessionStorage (`session.running`), so that a reload can reattach to it (`attach`). A reload
// drops the connection, not the answer: nothing is forgotten once the page is being unloaded.

import { t } from "./i18n.js";
import { session } from "./session.js";
import { PermissionDeniedError, StreamError } from "./vendor/kaiwa-client/index.js";

// What a screen reader hears when an answer ends, by its status.
const ANNOUNCEMENTS = {
  completed: "answerComplete",
  cancelled: "answerStopped",
  awaiting_form: "answerAsksForm",
  failed: "answerFailed",
};

export class Follower {
  /** The stream being followed, while an answer runs. */
  stream = null;
  #hooks;
  #unloading = false;

  /**
   * `hooks`: `onRunning(on)`, `onTitle(chatId, name)`, `onEnded(view, chatId, responseId)` and
   * `announce(text)`.
   */
  constructor(hooks) {
    this.#hooks = hooks;
    window.addEventListener("pagehide", () => {
      this.#unloading = true;
    });
  }

  get running() {
    return this.stream !== null;
  }

  claim(stream) {
    this.stream = stream;
    this.#hooks.onRunning(true);
  }

  owns(stream) {
    return this.stream === stream;
  }

  /** The stream was refused before it started: nothing runs. */
  release(stream) {
    if (this.stream !== stream) return;
    this.stream = null;
    this.#hooks.onRunning(false);
  }

  /** Drop the connection (not a stop: the answer goes on on the server). */
  detach() {
    const stream = this.stream;
    if (!stream) return;
    this.stream = null;
    stream.close();
    this.#hooks.onRunning(false);
  }

  /** Ask the server to stop the answer; the stream then ends as `cancelled`. */
  stop() {
    const stream = this.stream;
    if (!stream) return;
    this.#hooks.announce(t("stopping"));
    stream
      .cancel()
      .catch((error) => this.#hooks.announce(t("stopFailed", { error: error.message })));
  }

  /**
   * Replay a response's events from the first into `view`, and follow it to its end. With a
   * resume token the events are read without the key; an expired token falls back to the key.
   */
  async attach(client, view, { chatId, responseId, token, agentId }) {
    view.reset();
    const stream = client.responses.events(chatId, responseId, { token });
    this.claim(stream);
    session.running = { chatId, responseId, token, agentId };
    if (token !== null) {
      try {
        await stream.open();
      } catch (error) {
        if (!this.owns(stream)) return;
        if (error instanceof PermissionDeniedError) {
          return this.attach(client, view, { chatId, responseId, token: null, agentId });
        }
        // any other refusal is shown by `follow`, which reads it from the stream
      }
    }
    if (this.owns(stream)) await this.follow(stream, view, { chatId, agentId });
  }

  async follow(stream, view, { chatId, agentId }) {
    this.claim(stream);
    view.start();
    this.#hooks.announce(t("answering"));
    try {
      for await (const event of stream) {
        if (event.type === "response.created") {
          session.running = {
            chatId,
            responseId: event.response_id,
            token: event.resume_token ?? stream.resumeToken,
            agentId,
          };
        } else if (event.type === "response.chat.title.updated") {
          this.#hooks.onTitle(event.chat_id, event.name);
        }
        view.apply(stream.state, event);
      }
      if (stream.done) view.finish(stream.state);
    } catch (error) {
      if (error instanceof StreamError) {
        const { text, usage, steps } = stream.state;
        view.finish({ text, usage, steps, status: "failed", error });
      } else {
        view.fail(error);
      }
    }
    if (this.#unloading) return; // keep `session.running`: the reloaded page reattaches
    if (session.running?.responseId === stream.responseId) session.running = null;
    if (!this.owns(stream)) return; // detached: another chat is shown
    this.release(stream);
    const announcement = ANNOUNCEMENTS[view.status];
    this.#hooks.announce(announcement ? t(announcement) : "");
    await this.#hooks.onEnded(view, chatId, stream.responseId);
  }
}
