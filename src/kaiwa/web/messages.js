// The two kinds of message in the conversation: what the user sent, and an agent's answer.
//
//     const answer = new AnswerView(actions);
//     answer.start();                         // streaming: aria-busy, a caret
//     answer.apply(stream.state, event);      // after each event of the stream
//     answer.finish(stream.state);            // completed | cancelled | awaiting_form | failed
//
// An answer's `data-status` attribute says where it is (`streaming`, `completed`, `cancelled`,
// `awaiting_form`, `failed`, `superseded`): the page's styles and its tests both read it.

import { formatBytes, h, markLanguage, replace } from "./dom.js";
import { FormView } from "./form.js";
import { renderMarkdown } from "./markdown.js";
import { StepList } from "./steps.js";

const FORM_STEP = "consultant_request_form";

export function userMessage(text, files, { onOpenFile }) {
  const body = h("div", { class: "body plain" }, text);
  markLanguage(body, text);
  return h(
    "article",
    { class: "message user", "aria-label": "You" },
    body,
    files?.length ? fileList(files, onOpenFile) : null,
  );
}

function fileList(files, onOpenFile) {
  return h(
    "ul",
    { class: "files", "aria-label": "Attached files" },
    files.map((file) =>
      h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "file-chip", onclick: () => onOpenFile(file) },
          h("span", { class: "file-name" }, file.original_name ?? file.name ?? "file"),
          h("span", { class: "file-size" }, formatBytes(file.size)),
        ),
      ),
    ),
  );
}

export class AnswerView {
  #actions;
  #steps = new StepList();
  #body = h("div", { class: "body markdown", "aria-live": "polite", "aria-busy": "false" });
  #formSlot = h("div", { class: "form-slot" });
  #notice = h("div", { class: "notice" });
  #usage = h("p", { class: "usage" });
  #feedback = [];
  #regenerate;
  #text = "";
  #frame = null;
  #formStep = null;
  form = null;
  messageId = null;
  responseId = null;

  /** `actions`: `{onFeedback(view, type), onRegenerate(view), onSubmitForm(view, form, values)}`. */
  constructor(actions, { agentName = null } = {}) {
    this.#actions = actions;
    this.#feedback = [
      this.#feedbackButton("sys_helpful", "👍", "Helpful"),
      this.#feedbackButton("sys_improve", "👎", "Needs improvement"),
    ];
    this.#regenerate = h(
      "button",
      {
        type: "button",
        class: "regenerate",
        hidden: true,
        onclick: () => actions.onRegenerate(this),
      },
      "↻ Regenerate",
    );
    this.element = h(
      "article",
      { class: "message answer", "aria-label": agentName ? `Answer from ${agentName}` : "Answer" },
      this.#steps.element,
      this.#body,
      this.#formSlot,
      this.#notice,
      h(
        "footer",
        { class: "answer-footer" },
        this.#usage,
        h("div", { class: "actions" }, ...this.#feedback, this.#regenerate),
      ),
    );
    this.element.dataset.status = "streaming";
  }

  get status() {
    return this.element.dataset.status;
  }

  /** An answer being streamed (or streamed again from its start after a reload). */
  start() {
    this.element.dataset.status = "streaming";
    this.#body.setAttribute("aria-busy", "true");
    replace(this.#notice);
    this.#usage.textContent = "";
    this.#setFeedbackEnabled(false);
  }

  /** Back to empty, to replay a response's events from the first. */
  reset() {
    this.#steps.element.remove();
    this.#steps = new StepList();
    this.element.prepend(this.#steps.element);
    replace(this.#formSlot);
    this.form = null;
    this.setText("");
    this.start();
  }

  /** Show what `state` (a `ResponseState`) holds after `event`. */
  apply(state, event) {
    this.responseId = state.responseId ?? this.responseId;
    if (event.type === "response.output_text.delta") this.setText(state.text);
    else if (event.type.startsWith("response.reasoning_step.")) {
      const step = state.steps.find((s) => s.id === event.step.id);
      if (step) this.#steps.update(step);
    }
  }

  setText(text) {
    this.#text = text;
    if (this.#frame === null) this.#frame = requestAnimationFrame(() => this.#render());
  }

  #render() {
    if (this.#frame !== null) cancelAnimationFrame(this.#frame);
    this.#frame = null;
    replace(this.#body, renderMarkdown(this.#text));
    markLanguage(this.#body, this.#text);
  }

  /**
   * The end: `{status, text, usage, steps, error, responseTimeMs}` — a stream's `ResponseState`
   * or a stored message's meta.
   */
  finish({ status, text, usage = null, steps = [], error = null, responseTimeMs = null }) {
    if (text !== undefined && text !== null) this.#text = text;
    this.#render();
    for (const step of steps ?? []) this.#steps.update(step);
    this.element.dataset.status = status;
    this.#body.setAttribute("aria-busy", "false");
    if (status !== "completed" && status !== "awaiting_form") this.#steps.interrupt();
    if (status === "cancelled") {
      replace(this.#notice, h("p", { class: "badge stopped" }, "Stopped"));
    } else if (status === "failed") {
      const detail = error?.message ? `: ${error.message}` : "";
      const code = error?.code ? ` (${error.code})` : "";
      replace(
        this.#notice,
        h("p", { class: "badge failed", role: "alert" }, `The answer failed${detail}${code}`),
      );
    } else if (status === "awaiting_form") {
      const pending = [...(steps ?? [])].reverse().find((s) => s.type === FORM_STEP && !s.result);
      if (pending?.args?.form_request_id) {
        this.#formStep = pending.id;
        this.#steps.mark(pending.id, "waiting", "waiting for the form");
        this.showForm(pending.args);
      }
    }
    this.#usage.textContent = describeUsage(usage, responseTimeMs);
  }

  /** The stream broke off without an end the server sent (e.g. the network is gone). */
  fail(error) {
    this.finish({
      status: "failed",
      error: { message: error?.message ?? String(error), code: error?.code },
    });
  }

  showForm(args) {
    this.form = new FormView(args, {
      onSubmit: (values) => this.#actions.onSubmitForm(this, this.form, values),
    });
    replace(this.#formSlot, this.form.element);
    return this.form;
  }

  /** The form was submitted (here or before a reload), or can no longer be: read-only. */
  lockForm(values, { note = "Submitted", expired = false } = {}) {
    this.form?.lock(values, note);
    if (expired) this.#steps.mark(this.#formStep, "interrupted", "expired");
    else this.#steps.mark(this.#formStep, "done", "submitted");
  }

  /** The stored message's id: feedback can be given from now on. */
  setMessageId(id) {
    this.messageId = id;
    this.element.dataset.messageId = String(id);
    this.#setFeedbackEnabled(true);
  }

  setFeedback(type) {
    for (const button of this.#feedback) {
      button.setAttribute("aria-pressed", String(button.dataset.type === type));
    }
  }

  /** Only the chat's last answer offers to be regenerated, and only while nothing runs. */
  offerRegenerate(on) {
    this.#regenerate.hidden = !on;
  }

  /** Replaced by a regenerated answer: kept, folded away. */
  supersede() {
    this.element.dataset.status = "superseded";
    this.offerRegenerate(false);
    this.#setFeedbackEnabled(false);
  }

  #feedbackButton(type, symbol, label) {
    return h(
      "button",
      {
        type: "button",
        class: "feedback",
        "data-type": type,
        "aria-label": label,
        title: label,
        "aria-pressed": "false",
        disabled: true,
        onclick: () => this.#actions.onFeedback(this, type),
      },
      symbol,
    );
  }

  #setFeedbackEnabled(on) {
    for (const button of this.#feedback) button.disabled = !on;
  }
}

export function describeUsage(usage, responseTimeMs = null) {
  if (!usage || !usage.total_tokens) return "";
  const parts = [
    `${usage.total_tokens} tokens (${usage.total_prompt_tokens} in · ${usage.total_completion_tokens} out)`,
  ];
  if (usage.total_calls)
    parts.push(`${usage.total_calls} model ${usage.total_calls === 1 ? "call" : "calls"}`);
  if (typeof responseTimeMs === "number") parts.push(`${(responseTimeMs / 1000).toFixed(1)} s`);
  return parts.join(" · ");
}
