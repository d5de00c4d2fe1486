// The two kinds of message in the conversation: what the user sent, and an agent's answer.
//
//     const answer = new AnswerView(actions);
//     answer.start();                         // streaming: aria-busy, a caret
//     answer.apply(stream.state, event);      // after each event of the stream
//     answer.finish(stream.state);            // completed | cancelled | awaiting_form | failed
//
// An answer's `data-status` attribute says where it is (`streaming`, `completed`, `cancelled`,
// `awaiting_form`, `failed`, `superseded`): the page's styles and its tests both read it. Its
// buttons (copy, feedback) come once it has ended: a verdict on half an answer means nothing.

import { copyText } from "./clipboard.js";
import { formatBytes, h, markLanguage, replace } from "./dom.js";
import { FormView } from "./form.js";
import { formatDateTime, formatNumber, formatTime, t } from "./i18n.js";
import { renderMarkdown } from "./markdown.js";
import { StepList } from "./steps.js";

const FORM_STEP = "consultant_request_form";
const ENDED = new Set(["completed", "cancelled", "failed"]);
const COPIED_FOR_MS = 2_000;

export function userMessage(text, files, { onOpenFile }, createdAt = new Date()) {
  const body = h("div", { class: "body plain" }, text);
  markLanguage(body, text);
  return h(
    "article",
    { class: "message user", "aria-label": t("you") },
    body,
    files?.length ? fileList(files, onOpenFile) : null,
    h("footer", { class: "message-meta" }, timestamp(createdAt)),
  );
}

/** A `<time>`: short, with the full date and time as its tooltip. */
function timestamp(value) {
  const date = new Date(value ?? Date.now());
  return h(
    "time",
    { class: "timestamp", dateTime: date.toISOString(), title: formatDateTime(date) },
    formatTime(date),
  );
}

function fileList(files, onOpenFile) {
  return h(
    "ul",
    { class: "files", "aria-label": t("attachedFiles") },
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
  #time = h("span");
  #usage = h("p", { class: "usage" });
  #copy;
  #feedback = [];
  #regenerate;
  #text = "";
  #frame = null;
  #formStep = null;
  form = null;
  messageId = null;
  responseId = null;

  /**
   * `actions`: `{onFeedback(view, type), onRegenerate(view), onSubmitForm(view, form, values)}`.
   */
  constructor(actions, { agentName = null } = {}) {
    this.#actions = actions;
    this.#copy = h(
      "button",
      { type: "button", class: "copy", hidden: true, onclick: () => this.#copyText() },
      t("copy"),
    );
    this.#feedback = [
      this.#feedbackButton("sys_helpful", "👍", t("helpful")),
      this.#feedbackButton("sys_improve", "👎", t("needsImprovement")),
    ];
    this.#regenerate = h(
      "button",
      {
        type: "button",
        class: "regenerate",
        hidden: true,
        onclick: () => actions.onRegenerate(this),
      },
      `↻ ${t("regenerate")}`,
    );
    const label = agentName ? t("answerFrom", { name: agentName }) : t("answer");
    this.element = h(
      "article",
      { class: "message answer", "aria-label": label },
      this.#steps.element,
      this.#body,
      this.#formSlot,
      this.#notice,
      h(
        "footer",
        { class: "answer-footer" },
        h("div", { class: "message-meta" }, this.#time, this.#usage),
        h("div", { class: "actions" }, this.#copy, ...this.#feedback, this.#regenerate),
      ),
    );
    this.element.dataset.status = "streaming";
    this.setTime(new Date());
  }

  get status() {
    return this.element.dataset.status;
  }

  /** When the answer was written: now for a live one, `created_at` for a stored one. */
  setTime(value) {
    const time = timestamp(value);
    this.#time.replaceWith(time);
    this.#time = time;
  }

  /** An answer being streamed (or streamed again from its start after a reload). */
  start() {
    this.element.dataset.status = "streaming";
    this.#body.setAttribute("aria-busy", "true");
    replace(this.#notice);
    this.#usage.textContent = "";
    this.#syncButtons();
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
      replace(this.#notice, h("p", { class: "badge stopped" }, t("stopped")));
    } else if (status === "failed") {
      const detail = [error?.message, error?.code ? `(${error.code})` : null];
      const reason = detail.filter(Boolean).join(" ");
      const message = reason ? t("answerFailedBecause", { error: reason }) : t("answerFailed");
      replace(this.#notice, h("p", { class: "badge failed", role: "alert" }, message));
    } else if (status === "awaiting_form") {
      const pending = [...(steps ?? [])].reverse().find((s) => s.type === FORM_STEP && !s.result);
      if (pending?.args?.form_request_id) {
        this.#formStep = pending.id;
        this.#steps.mark(pending.id, "waiting");
        this.showForm(pending.args);
      }
    }
    const described = describeUsage(usage, responseTimeMs);
    this.#usage.textContent = described.text;
    this.#usage.title = described.estimated ? t("estimated") : "";
    this.#syncButtons();
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
  lockForm(values, { note = t("submitted"), expired = false } = {}) {
    this.form?.lock(values, note);
    this.#steps.mark(this.#formStep, expired ? "expired" : "submitted");
  }

  /** The stored message's id: feedback can be given from now on. */
  setMessageId(id) {
    this.messageId = id;
    this.element.dataset.messageId = String(id);
    this.#syncButtons();
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
    if (!this.element.querySelector(".superseded-note")) {
      this.element.prepend(h("p", { class: "superseded-note" }, t("superseded")));
    }
    this.offerRegenerate(false);
    this.#syncButtons();
  }

  #syncButtons() {
    const ended = ENDED.has(this.status);
    this.#copy.hidden = !ended || this.#text === "";
    for (const button of this.#feedback) button.hidden = !ended || this.messageId === null;
  }

  async #copyText() {
    try {
      await copyText(this.#text);
      this.#copy.textContent = t("copied");
    } catch {
      this.#copy.textContent = t("copyFailed");
    }
    setTimeout(() => {
      this.#copy.textContent = t("copy");
    }, COPIED_FOR_MS);
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
        hidden: true,
        onclick: () => this.#actions.onFeedback(this, type),
      },
      symbol,
    );
  }
}

/**
 * The usage line — "1,234 tokens (1,000 in · 234 out) · 2 model calls · 1.2 s" — with "≈" before
 * the counts the server estimated (`usage.estimated`: the provider reported none, e.g. for an
 * answer stopped midway). `{text, estimated}`.
 */
export function describeUsage(usage, responseTimeMs = null) {
  if (!usage || !usage.total_tokens) return { text: "", estimated: false };
  const estimated = usage.estimated === true;
  const approx = (count) => `${estimated ? "≈" : ""}${formatNumber(count)}`;
  const parts = [
    t("tokens", {
      total: approx(usage.total_tokens),
      prompt: formatNumber(usage.total_prompt_tokens ?? 0),
      completion: approx(usage.total_completion_tokens ?? 0),
    }),
  ];
  if (usage.total_calls) parts.push(t("modelCalls", { count: usage.total_calls }));
  if (typeof responseTimeMs === "number") {
    const seconds = formatNumber(responseTimeMs / 1000, {
      minimumFractionDigits: 1,
      maximumFractionDigits: 1,
    });
    parts.push(t("seconds", { value: seconds }));
  }
  return { text: parts.join(" · "), estimated };
}
