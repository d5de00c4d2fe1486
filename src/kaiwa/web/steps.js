// The reasoning steps of an answer as a timeline of sentences in the page's language — "Searched
// the knowledge base: 3 results" — then what each found: sources by their titles with plain-text
// snippets, web results as links, a called agent's answer, a submitted form's labels and values,
// or why it failed. The tool's own name and the tokens it used sit in a closed "details".
//
//     const steps = new StepList();
//     answer.append(steps.element);
//     steps.update(stepFromStartEvent);   // a running step
//     steps.update(mergedStepAfterEnd);   // the same step, finished
//     steps.mark(formStepId, "waiting");  // a state the step cannot tell by itself
//
// A step is updated in place by its id, so a reader's open "details" stay open while the answer
// streams on. A look through the chat that found nothing is left out: it says nothing.

import { h, link, markLanguage, replace } from "./dom.js";
import { formatNumber, t } from "./i18n.js";
import { plainText, renderMarkdown } from "./markdown.js";

const MAX_ITEMS = 8;
// Each tool's sentences (`<key>Running`, `<key>Done`, `<key>Failed` in strings.js) and its list of
// findings, by `tool_name`.
const TOOLS = {
  retrieve_context_objs: { key: "search", found: (data) => data.sources },
  retrieve_context: { key: "search", found: (data) => data.sources }, // before 0.2
  search_web: { key: "web", found: (data) => data.results },
  fetch_web_content: { key: "fetch" },
  call_agent: { key: "agent" },
  lookup: { key: "lookup", found: (data) => data.results },
  request_form: { key: "form" },
};
const OTHER_TOOL = { key: "tool" };
// States set from outside (`mark`): the step's own result cannot tell them.
const MARKS = new Set(["waiting", "submitted", "expired", "interrupted"]);

// The fields of each form asked for, by step id. The step that ends a form, in the answer that
// goes on after the submit, holds only the values: they are shown by the labels asked with.
const formFields = new Map();

export class StepList {
  #items = new Map(); // step id -> {element, step, mark}
  #list = h("ol", { class: "steps" });
  #summary = h("summary");

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
      item = { element: h("li", { class: "step", "data-step-id": step.id }), mark: null };
      this.#items.set(step.id, item);
      this.#list.append(item.element);
    }
    item.step = step;
    this.#render(item);
  }

  /** Steps still running when the answer ended (stopped, failed) are shown as interrupted. */
  interrupt() {
    for (const id of this.#items.keys()) this.mark(id, "interrupted");
  }

  /** `waiting` (on the user's form), `submitted`, `expired` or `interrupted`: of a running step. */
  mark(id, state) {
    const item = this.#items.get(id);
    if (!item || !MARKS.has(state) || item.step.result) return;
    if (item.mark !== null && item.mark !== "waiting") return;
    item.mark = state;
    this.#render(item);
  }

  #render(item) {
    renderStep(item.element, item.step, item.mark);
    const shown = [...this.#items.values()].filter((i) => !i.element.hidden).length;
    this.element.hidden = shown === 0;
    this.#summary.textContent = t("steps", { count: shown });
  }
}

function renderStep(item, step, mark) {
  const tool = TOOLS[step.tool_name] ?? OTHER_TOOL;
  const result = step.result ?? null;
  const data = result?.data ?? {};
  const state = result ? (result.success ? "done" : "failed") : (mark ?? "running");
  if (step.tool_name === "request_form" && Array.isArray(step.args?.fields)) {
    formFields.set(step.id, step.args.fields);
  }
  const found = result?.success && tool.found ? listOf(tool.found(data)) : null;
  // An empty look through the chat is noise: the answer says what it found.
  item.hidden = step.tool_name === "lookup" && found?.length === 0;
  item.dataset.state = DATA_STATES[state];
  item.dataset.tool = step.tool_name ?? "";
  const text = sentence(tool, step, state, found);
  const query = step.args?.query ?? data.query;
  const title = h(
    "p",
    { class: "step-title" },
    h("span", { class: "step-text" }, text),
    query ? h("span", { class: "step-query" }, " ", t("quoted", { text: query })) : null,
    state === "interrupted" ? h("span", { class: "step-state" }, t("interrupted")) : null,
  );
  markLanguage(title, `${text}${query ?? ""}`);
  const open = item.querySelector(".step-details")?.open ?? false; // a reader opened it: keep it so
  replace(item, title);
  if (state === "failed") {
    const reason = data.error ? t("failedBecause", { error: data.error }) : null;
    if (reason) item.append(h("p", { class: "step-error" }, reason));
  } else if (result) {
    item.append(...findings(step, data, found));
  }
  item.append(details(step, open));
}

// The dot of the timeline: a form asked for is `waiting`, then `done` once submitted.
const DATA_STATES = {
  running: "running",
  waiting: "waiting",
  done: "done",
  submitted: "done",
  failed: "failed",
  expired: "interrupted",
  interrupted: "interrupted",
};

function sentence(tool, step, state, found) {
  const agent = step.args?.agent ?? step.result?.data?.agent ?? t("anotherAgent");
  if (tool === OTHER_TOOL && state === "running" && step.content) return step.content;
  switch (state) {
    case "waiting":
      return t("formWaiting");
    case "expired":
      return t("formExpiredStep");
    case "failed":
      return t(`${tool.key}Failed`, { agent });
    case "done":
    case "submitted":
      return t(`${tool.key}Done`, { agent, results: t("results", { count: found?.length ?? 0 }) });
    default:
      return t(`${tool.key}Running`, { agent });
  }
}

function listOf(items) {
  return Array.isArray(items) ? items : [];
}

/** What a finished step found, shown under its sentence. */
function findings(step, data, found) {
  switch (step.tool_name) {
    case "retrieve_context_objs":
    case "retrieve_context":
    case "lookup":
      return [sources(found, (s) => h("strong", {}, s.title || s.source || t("untitled")))];
    case "search_web":
      return [sources(found, (s) => [link(s.url, s.title || s.url), host(s.url)])];
    case "fetch_web_content":
      return [
        h(
          "div",
          { class: "source" },
          h("p", { class: "source-head" }, link(data.url, data.title || data.url || "")),
          data.excerpt ? snippet(data.excerpt) : null,
        ),
      ];
    case "call_agent":
      return [
        h(
          "blockquote",
          { class: "agent-answer" },
          h("div", { class: "markdown" }, renderMarkdown(data.answer ?? "")),
        ),
      ];
    case "request_form":
      return [formValues(step, data)];
    default:
      return [];
  }
}

function sources(items, head) {
  if (!items?.length) return null;
  return h(
    "ul",
    { class: "sources" },
    items.slice(0, MAX_ITEMS).map((source) =>
      h(
        "li",
        { class: "source" },
        h("p", { class: "source-head" }, head(source)),
        source.snippet ? snippet(source.snippet) : null,
      ),
    ),
  );
}

function snippet(text) {
  const plain = plainText(text);
  const p = h("p", { class: "snippet" }, plain);
  markLanguage(p, plain);
  return p;
}

function host(href) {
  try {
    return h("span", { class: "url" }, ` ${new URL(href).host}`);
  } catch {
    return null;
  }
}

/** A submitted form: each field's label, and the labels of the options chosen. */
function formValues(step, values) {
  const fields = step.args?.fields ?? formFields.get(step.id) ?? [];
  const byName = new Map(fields.map((field) => [field.name, field]));
  const list = h("dl", { class: "form-values" });
  for (const [name, value] of Object.entries(values ?? {})) {
    const field = byName.get(name);
    const options = new Map((field?.options ?? []).map((o) => [o.value, o.label || o.value]));
    const shown = (Array.isArray(value) ? value : [value]).map((v) => options.get(v) ?? String(v));
    list.append(h("dt", {}, field?.label || name), h("dd", {}, shown.join(t("listSeparator"))));
  }
  markLanguage(list, list.textContent);
  return list;
}

/** The tool's own name and the tokens it used: for the curious, closed by default. */
function details(step, open) {
  const tokens = step.token_usage?.total_tokens ?? 0;
  return h(
    "details",
    { class: "step-details", open },
    h("summary", {}, t("details")),
    h(
      "dl",
      {},
      h("dt", {}, t("tool")),
      h("dd", {}, h("code", { class: "step-tool" }, step.tool_name ?? step.type ?? "")),
      tokens > 0 ? [h("dt", {}, t("stepTokens")), h("dd", {}, formatNumber(tokens))] : null,
    ),
  );
}
