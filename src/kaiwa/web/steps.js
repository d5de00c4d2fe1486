// The reasoning steps of an answer as a timeline: what each tool was asked, then what it found —
// sources with titles and snippets, web results as links, a called agent's answer, submitted form
// values — or why it failed.
//
//     const steps = new StepList();
//     answer.append(steps.element);
//     steps.update(stepFromStartEvent);   // a running step
//     steps.update(mergedStepAfterEnd);   // the same step, finished
//
// A step is updated in place by its id, so a reader's open "details" stay open while the answer
// streams on.

import { h, link, markLanguage, replace } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const LABELS = {
  retrieve_context_objs: "Knowledge base search",
  retrieve_context: "Knowledge base search", // its name in answers stored before 0.2
  search_web: "Web search",
  fetch_web_content: "Reading a web page",
  call_agent: "Asking another agent",
  request_form: "Form filled in",
  lookup: "Looking through this chat",
};
const MAX_ITEMS = 8;

export class StepList {
  #items = new Map();
  #list = h("ol", { class: "steps" });
  #summary = h("summary", {}, "Steps");

  constructor() {
    this.element = h(
      "details",
      { class: "steps-box", open: true, hidden: true },
      this.#summary,
      this.#list,
    );
  }

  /** Add or refresh one step (`{id, type, tool_name, content, args, result, token_usage}`). */
  update(step) {
    let item = this.#items.get(step.id);
    if (!item) {
      item = h("li", { class: "step", "data-step-id": step.id });
      this.#items.set(step.id, item);
      this.#list.append(item);
      this.element.hidden = false;
      const count = this.#items.size;
      this.#summary.textContent = count === 1 ? "1 step" : `${count} steps`;
    }
    renderStep(item, step);
  }

  /** Steps still running when the answer ended (stopped, failed) are shown as interrupted. */
  interrupt() {
    for (const id of this.#items.keys()) this.mark(id, "interrupted", "interrupted");
  }

  /** A step that waits on the user (a form) or that they finished, without a result of its own. */
  mark(id, state, label) {
    const item = this.#items.get(id);
    if (!item || (item.dataset.state !== "running" && item.dataset.state !== "waiting")) return;
    item.dataset.state = state;
    item.querySelector(".step-state").textContent = label;
  }
}

function renderStep(item, step) {
  const result = step.result ?? null;
  const state = result === null ? "running" : result.success ? "done" : "failed";
  item.dataset.state = state;
  const title = step.content || LABELS[step.tool_name] || step.tool_name || "Step";
  const heading = h(
    "p",
    { class: "step-title" },
    h("span", { class: "step-text" }, title),
    " ",
    h("span", { class: "step-state" }, state === "done" ? "done" : state),
  );
  markLanguage(heading, title);
  replace(item, heading, h("p", { class: "step-tool" }, step.tool_name ?? ""));
  if (result === null) return;
  if (!result.success) {
    const error = result.data?.error ?? "The tool failed";
    item.append(h("p", { class: "step-error" }, `Failed: ${error}`));
  } else {
    item.append(...details(step.tool_name, result.data ?? {}));
  }
  const tokens = step.token_usage?.total_tokens ?? 0;
  if (tokens > 0) item.append(h("p", { class: "step-usage" }, `${tokens} tokens`));
}

function details(tool, data) {
  switch (tool) {
    case "retrieve_context_objs":
    case "retrieve_context":
      return [sources(data.sources, (s) => [h("strong", {}, s.title || "Untitled"), score(s)])];
    case "lookup":
      return [sources(data.results, (s) => [h("strong", {}, s.title || s.source || ""), score(s)])];
    case "search_web":
      return [sources(data.results, (s) => [link(s.url, s.title || s.url), url(s.url)])];
    case "fetch_web_content":
      return [
        h(
          "div",
          { class: "source" },
          h("p", {}, link(data.url, data.title || data.url || "")),
          data.excerpt ? snippet(data.excerpt) : null,
        ),
      ];
    case "call_agent":
      return [
        h(
          "blockquote",
          { class: "agent-answer" },
          h("p", { class: "agent-name" }, data.agent ?? "Agent"),
          h("div", { class: "markdown" }, renderMarkdown(data.answer ?? "")),
        ),
      ];
    case "request_form":
      return [formValues(data)];
    default:
      return [];
  }
}

function sources(items, head) {
  if (!Array.isArray(items) || items.length === 0)
    return h("p", { class: "step-none" }, "Nothing found");
  const list = h("ul", { class: "sources" });
  for (const source of items.slice(0, MAX_ITEMS)) {
    list.append(
      h(
        "li",
        { class: "source" },
        h("p", { class: "source-head" }, ...head(source)),
        source.snippet ? snippet(source.snippet) : null,
      ),
    );
  }
  return list;
}

function snippet(text) {
  const p = h("p", { class: "snippet" }, text);
  markLanguage(p, text);
  return p;
}

function score(source) {
  return typeof source.score === "number"
    ? h("span", { class: "score" }, ` ${source.score.toFixed(2)}`)
    : null;
}

function url(href) {
  return h("span", { class: "url" }, ` ${href ?? ""}`);
}

function formValues(values) {
  const list = h("dl", { class: "form-values" });
  for (const [name, value] of Object.entries(values)) {
    list.append(
      h("dt", {}, name),
      h("dd", {}, Array.isArray(value) ? value.join(", ") : String(value)),
    );
  }
  return list;
}
