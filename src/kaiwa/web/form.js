// A form an agent asked for (`request_form`), built from its schema, checked, and submitted.
//
//     const form = new FormView(step.args, { onSubmit: async (values) => … });
//     answer.append(form.element);
//     form.showRefusal(error.message, errorsList);   // the server's 400, on the fields it names
//     form.lock(values);                             // submitted: read-only, showing the values
//
// The values are checked in the browser by the server's rules (validate.js) and every problem is
// shown at once, under its field, before anything is sent; the server checks them again, and
// its refusal is shown the same way. A date is typed as YYYY-MM-DD in a text box: a date picker
// shows dates in the browser's own format (2026/11/30), and this way what is typed is what is
// sent and checked.

import { h, markLanguage, uid } from "./dom.js";
import { t } from "./i18n.js";
import { MAX_TEXT, checkValues, refusedFields } from "./validate.js";

const CHOICES = new Set(["dropdown", "radio", "checkbox"]);

export class FormView {
  #fields;
  #controls = new Map(); // field name -> {inputs, error}
  #fieldset;
  #error;
  #submit;

  constructor(args, { onSubmit }) {
    this.formRequestId = args.form_request_id;
    this.#fields = Array.isArray(args.fields) ? args.fields : [];
    const titleId = uid("form-title");
    const title = args.title || t("form");
    this.#submit = h("button", { type: "submit", class: "primary" }, t("submit"));
    this.#error = h("p", { class: "form-error", role: "alert", hidden: true });
    this.#fieldset = h("fieldset", { class: "form-fields" });
    for (const field of this.#fields) this.#fieldset.append(this.#field(field));
    this.#fieldset.append(this.#error, h("div", { class: "form-actions" }, this.#submit));
    this.element = h(
      "form",
      {
        class: "agent-form",
        noValidate: true,
        "aria-labelledby": titleId,
        "data-form-request-id": this.formRequestId,
        onsubmit: (event) => {
          event.preventDefault();
          const values = this.values();
          const problems = checkValues(this.#fields, values);
          this.clearErrors();
          if (problems.length) this.#showProblems(problems);
          else onSubmit(values);
        },
      },
      h("h3", { id: titleId, class: "form-title" }, title),
      this.#fieldset,
    );
    markLanguage(this.element, title + this.#fields.map((f) => f.label).join(""));
  }

  /** The values to submit, by field name (empty fields left out). */
  values() {
    const values = {};
    for (const field of this.#fields) {
      const value = readValue(field, this.#controls.get(field.name).inputs);
      if (value !== undefined) values[field.name] = value;
    }
    return values;
  }

  /** Disable while a submission is on its way. */
  busy(on) {
    this.#fieldset.disabled = on;
    this.#submit.textContent = on ? t("submitting") : t("submit");
  }

  clearErrors() {
    this.#showError(null);
    for (const name of this.#controls.keys()) this.#flag(name, null);
  }

  /** A refusal the form cannot place on a field (busy, conflict…), above the button. */
  showError(message) {
    this.#showError(message);
  }

  /** The server refused the values: on the fields it names (its `errors` list, else message). */
  showRefusal(message, errors = null) {
    const problems = refusedFields(errors, message);
    if (problems.length) this.#showProblems(problems);
    else this.#showError(message);
  }

  /** Submitted (by this page or before): read-only, with the values when known. */
  lock(values = null, note = t("submitted")) {
    if (values) this.#fill(values);
    this.#fieldset.disabled = true;
    this.#submit.hidden = true;
    this.element.dataset.state = "submitted";
    this.element.append(h("p", { class: "form-note" }, note));
  }

  /** Each problem under its field (unknown fields above the button); the first gets the focus. */
  #showProblems(problems) {
    const elsewhere = [];
    let first = null;
    for (const problem of problems) {
      const field = this.#fields.find((f) => f.name === problem.field);
      const message = problemMessage(field, problem);
      if (field && this.#flag(field.name, message)) first ??= field.name;
      else elsewhere.push(message);
    }
    const summary = t("formProblems", { count: problems.length });
    this.#showError([summary, ...elsewhere].join(" "));
    if (first !== null) this.#controls.get(first).inputs[0]?.focus();
  }

  /** Show `message` under the field (null clears it); false when there is no such field. */
  #flag(name, message) {
    const control = this.#controls.get(name);
    if (!control) return false;
    control.error.textContent = message ?? "";
    control.error.hidden = !message;
    for (const input of control.inputs) {
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    return true;
  }

  #showError(message) {
    this.#error.textContent = message ?? "";
    this.#error.hidden = !message;
  }

  #fill(values) {
    for (const field of this.#fields) {
      const inputs = this.#controls.get(field.name).inputs;
      const value = values[field.name];
      if (value === undefined) continue;
      if (field.type === "radio" || field.type === "checkbox") {
        const chosen = new Set((Array.isArray(value) ? value : [value]).map(String));
        for (const input of inputs) input.checked = chosen.has(input.value);
      } else {
        inputs[0].value = String(value);
      }
    }
  }

  #field(field) {
    const id = uid("field");
    const errorId = `${id}-error`;
    const error = h("p", { class: "field-error", id: errorId, hidden: true });
    const hint = field.question
      ? h("p", { class: "field-hint", id: `${id}-hint` }, field.question)
      : null;
    const describedBy = [hint ? `${id}-hint` : null, errorId].filter(Boolean).join(" ");
    const label = [field.label || field.name, field.required ? requiredMark() : null];
    // A field the user changes is no longer flagged: the next submit checks it again.
    const unflag = () => this.#flag(field.name, null);
    let wrap;
    let inputs;
    if (field.type === "radio" || field.type === "checkbox") {
      inputs = (field.options ?? []).map((option) =>
        h("input", {
          type: field.type,
          name: `${id}-${field.name}`,
          value: option.value,
          "aria-describedby": describedBy,
          onchange: unflag,
        }),
      );
      wrap = h(
        "fieldset",
        {
          class: "field choice",
          "data-field": field.name,
          "aria-required": field.required ? "true" : null,
        },
        h("legend", {}, ...label),
        hint,
        h(
          "div",
          { class: "choices" },
          inputs.map((input, index) =>
            h("label", { class: "choice" }, input, " ", field.options[index].label),
          ),
        ),
        error,
      );
    } else {
      const input = control(field, id, describedBy);
      input.addEventListener("input", unflag);
      inputs = [input];
      wrap = h(
        "div",
        { class: "field", "data-field": field.name },
        h("label", { htmlFor: id }, ...label),
        hint,
        input,
        error,
      );
    }
    this.#controls.set(field.name, { inputs, error });
    return wrap;
  }
}

/** A problem in words: the page's own for the reasons it knows, else the server's. */
function problemMessage(field, { field: name, reason, detail }) {
  switch (reason) {
    case "required":
      return CHOICES.has(field?.type) ? t("errorRequiredChoice") : t("errorRequired");
    case "type":
      return field?.type === "number" ? t("errorNumber") : t("errorType");
    case "date":
      return t("errorDate");
    case "option":
      return t("errorOption");
    case "too_long":
      return t("errorTooLong", { max: MAX_TEXT[field?.type] ?? MAX_TEXT.shortText });
    case "unknown":
      return t("errorUnknown", { field: name });
    default:
      return detail || t("errorType");
  }
}

function requiredMark() {
  return h(
    "span",
    { class: "required" },
    h("span", { "aria-hidden": "true" }, " *"),
    h("span", { class: "visually-hidden" }, ` (${t("required")})`),
  );
}

function control(field, id, describedBy) {
  const common = {
    id,
    name: field.name,
    "aria-describedby": describedBy,
    required: field.required,
  };
  switch (field.type) {
    case "longText":
      return h("textarea", { ...common, rows: 3 });
    case "number":
      return h("input", { ...common, type: "number", step: "any", inputMode: "decimal" });
    case "date":
      return h("input", {
        ...common,
        type: "text",
        placeholder: "YYYY-MM-DD",
        autocomplete: "off",
        spellcheck: false,
        "data-type": "date",
      });
    case "dropdown":
      return h(
        "select",
        common,
        h("option", { value: "" }, t("choose")),
        (field.options ?? []).map((option) => h("option", { value: option.value }, option.label)),
      );
    default:
      return h("input", { ...common, type: "text", autocomplete: "off" });
  }
}

function readValue(field, inputs) {
  switch (field.type) {
    case "checkbox": {
      const chosen = inputs.filter((input) => input.checked).map((input) => input.value);
      return chosen.length ? chosen : undefined;
    }
    case "radio":
      return inputs.find((input) => input.checked)?.value;
    case "number": {
      // What the browser could not read as a number is left empty, and flagged as `badInput`.
      if (inputs[0].validity.badInput) return Number.NaN;
      const raw = inputs[0].value.trim();
      return raw === "" ? undefined : Number(raw);
    }
    case "date": {
      const value = inputs[0].value.trim();
      return value === "" ? undefined : value;
    }
    default: {
      const value = inputs[0].value;
      return value.trim() === "" ? undefined : value;
    }
  }
}
