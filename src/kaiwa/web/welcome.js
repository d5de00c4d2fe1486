// The empty conversation: the agent's name and description, and its suggested questions — a
// click puts one in the message box, to edit or send.
//
//     showWelcome(element, agent, (question) => composer.prefill(question));

import { h, markLanguage, replace } from "./dom.js";
import { t } from "./i18n.js";

export function showWelcome(element, agent, onPick) {
  const suggestion = (question) =>
    h("button", { type: "button", class: "suggestion", onclick: () => onPick(question) }, question);
  const questions = (agent.suggested_questions ?? []).map((q) => h("li", {}, suggestion(q)));
  replace(
    element,
    h("h2", {}, agent.name),
    agent.description ? h("p", { class: "muted" }, agent.description) : null,
    questions.length
      ? h("ul", { class: "suggestions", "aria-label": t("suggestedQuestions") }, questions)
      : null,
  );
  markLanguage(element, `${agent.name}${agent.description ?? ""}`);
  element.hidden = false;
}
