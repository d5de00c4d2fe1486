// A chat's stored messages, shown: what the user sent, and each answer as it ended — its steps,
// usage and status, a form still to fill (or submitted, with its values), superseded answers
// folded away.
//
//     const live = showHistory(rows, { container, newAnswer, fileActions });
//     if (live) …  // the answer still in progress: reattach to its events

import { t } from "./i18n.js";
import { userMessage } from "./messages.js";

const FORM_STEP = "consultant_request_form";

/** Render `rows` (messages, oldest first); returns the view of an answer still in progress. */
export function showHistory(rows, { container, newAnswer, fileActions }) {
  const submitted = submittedForms(rows);
  let live = null;
  for (const row of rows) {
    if (row.role === "user") {
      container.append(userMessage(row.content, row.attached_files, fileActions, row.created_at));
      continue;
    }
    if (row.role !== "assistant") continue;
    const meta = row.meta ?? {};
    const view = newAnswer(meta.agent_profile?.name);
    view.responseId = meta.response_id ?? null;
    view.setTime(row.created_at);
    if (meta.status === "in_progress") {
      view.setText(row.content);
      live = view;
      continue;
    }
    view.setMessageId(row.id);
    view.finish({
      status: meta.status ?? "completed",
      text: row.content,
      usage: meta.token_usage,
      steps: meta.reasoning_steps ?? [],
      responseTimeMs: meta.response_time_ms,
    });
    const form = meta.form_request;
    if (view.form && form && form.status !== "pending") {
      const step = (meta.reasoning_steps ?? []).find((s) => s.args?.form_request_id === form.id);
      if (form.status === "submitted") view.lockForm(submitted.get(step?.id) ?? null);
      else view.lockForm(null, { note: t("formExpired"), expired: true });
    }
    if (meta.superseded) view.supersede();
  }
  return live;
}

/** The values of each submitted form, by its step id: the continuation's step end holds them. */
function submittedForms(rows) {
  const submitted = new Map();
  for (const row of rows) {
    for (const step of row.meta?.reasoning_steps ?? []) {
      if (step.type === FORM_STEP && step.result?.success) submitted.set(step.id, step.result.data);
    }
  }
  return submitted;
}
