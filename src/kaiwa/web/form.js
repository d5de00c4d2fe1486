// A form an agent asked for (`request_form`), built from its schema, and its submission.
//
//     const form = new FormView(step.args, { onSubmit: async (values) => … });
//     answer.append(form.element);
//     form.showError("values.name: required");   // the server's 400, shown on its field
//     form.lock(values);                          // submitted: read-only, showing the values
//
// The server checks the values (one source of truth for the rules): the form only converts them
// to their types — numbers as numbers, checkboxes as a list, empty fields left out.

import { h, markLanguage, uid } from "./dom.js";

const FIELD_ERROR = /^values\.([^:]+):\s*(.*)$/s;

export class FormView {
  #fields;
  #controls = new Map(); // field name -> {wrap, inputs, error}
  #fieldset;
  #error;
  #submit;

  constructor(args, { onSubmit }) {
    this.formRequestId = args.form_request_id;
    this.#fields = Array.isArray(args.fields) ? args.fields : [];
    const titleId = uid("form-title");
    const title = args.title || "Form";
    this.#submit = h("button", { type: "submit", class: "primary" }, "Submit");
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
          onSubmit(this.values());
        },
      },
      h("h3", { id: titleId, class: "form-title" }, title),
      this.#fieldset,
    );
    markLanguage(this.element, title + this.#fields.map((f) => f.label).join(""));
  }

  /** The values to submit, by field name. */
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
    this.#submit.textContent = on ? "Submitting…" : "Submit";
  }

  clearErrors() {
    this.#error.hidden = true;
    this.#error.textContent = "";
    for (const { inputs, error } of this.#controls.values()) {
      error.hidden = true;
      error.textContent = "";
      for (const input of inputs) input.removeAttribute("aria-invalid");
    }
  }

  /** Show a refusal: on its field when the message names one (`values.<name>: …`), else above. */
  showError(message) {
    const match = FIELD_ERROR.exec(message ?? "");
    const control = match ? this.#controls.get(match[1]) : undefined;
    if (control) {
      control.error.textContent = match[2] || message;
      control.error.hidden = false;
      for (const input of control.inputs) input.setAttribute("aria-invalid", "true");
      control.inputs[0]?.focus();
      return;
    }
    this.#error.textContent = message;
    this.#error.hidden = false;
  }

  /** Submitted (by this page or before): read-only, with the values when known. */
  lock(values = null, note = "Submitted") {
    if (values) this.#fill(values);
    this.#fieldset.disabled = true;
    this.#submit.hidden = true;
    this.element.dataset.state = "submitted";
    this.element.append(h("p", { class: "form-note" }, note));
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
    let wrap;
    let inputs;
    if (field.type === "radio" || field.type === "checkbox") {
      inputs = (field.options ?? []).map((option) =>
        h("input", {
          type: field.type,
          name: `${id}-${field.name}`,
          value: option.value,
          "aria-describedby": describedBy,
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
    this.#controls.set(field.name, { wrap, inputs, error });
    return wrap;
  }
}

function requiredMark() {
  return h(
    "span",
    { class: "required" },
    h("span", { "aria-hidden": "true" }, " *"),
    h("span", { class: "visually-hidden" }, " (required)"),
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
      return h("input", { ...common, type: "date" });
    case "dropdown":
      return h(
        "select",
        common,
        h("option", { value: "" }, "Choose…"),
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
      const raw = inputs[0].value.trim();
      if (raw === "") return undefined;
      const number = Number(raw);
      return Number.isFinite(number) ? number : raw; // the server names a non-number
    }
    default: {
      const value = inputs[0].value;
      return value.trim() === "" ? undefined : value;
    }
  }
}
