// `ResponseState`: what a stream has said so far, folded from its events.
//
// A port of kaiwa.protocol.state.ResponseState: the Python client's `final_text()`, the server's
// persistence and this client all fold events the same way.
//
//     const state = new ResponseState();
//     const delta = { type: "response.output_text.delta", response_id: "r", chat_id: 1 };
//     state.apply({ ...delta, delta: "こん" });
//     state.apply({ ...delta, delta: "にちは" });
//     state.text; // "こんにちは"

const ZERO_USAGE = Object.freeze({
  total_prompt_tokens: 0,
  total_completion_tokens: 0,
  total_tokens: 0,
  total_calls: 0,
});

export class ResponseState {
  responseId = null;
  chatId = null;
  /** `in_progress` until the terminal event: then `completed`, `cancelled`, `awaiting_form`
   * or `failed`. */
  status = "in_progress";
  title = null;
  usage = { ...ZERO_USAGE };
  /** The `response.error` event that ended the response, if one did. */
  error = null;
  /** Each step as `{id, type, tool_name, content, args, result, token_usage, ...}`. */
  steps = [];
  #chunks = [];
  #finalText = null;

  get text() {
    return this.#finalText ?? this.#chunks.join("");
  }

  get done() {
    return this.status !== "in_progress";
  }

  apply(event) {
    // Every event names its response: a stream resumed after `response.created` still has it.
    this.responseId = event.response_id;
    this.chatId = event.chat_id;
    switch (event.type) {
      case "response.output_text.delta":
        this.#chunks.push(event.delta);
        break;
      case "response.reasoning_step.start":
        this.steps.push({ ...event.step });
        break;
      case "response.reasoning_step.end":
        this.#endStep(event.step);
        break;
      case "response.chat.title.updated":
        this.title = event.name;
        break;
      case "response.output_text.completed":
        this.#finalText = event.final_text;
        this.usage = { ...ZERO_USAGE, ...event.usage };
        this.status = event.status ?? "completed";
        break;
      case "response.error":
        this.error = event;
        this.status = "failed";
        break;
    }
  }

  #endStep(end) {
    const step = this.steps.find((s) => s.id === end.id);
    if (step) Object.assign(step, end);
    else this.steps.push({ ...end });
  }
}
