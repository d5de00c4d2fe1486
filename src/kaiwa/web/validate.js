// A form's values checked in the browser by the server's rules (`check_values` in
// kaiwa/runtime/tools/form.py), so that every problem is flagged at once, before anything is
// sent; and the server's own refusal read back as the same problems.
//
//     checkValues(fields, { day: "2026/11/30" })   // [{field: "name", reason: "required"},
//                                                  //  {field: "day", reason: "date"}]
//     refusedFields(error.errors, error.message)   // a 400 on submit, as problems
//
// A problem is `{field, reason}`, `reason` one of REASONS — the vocabulary of the `errors` list
// the server puts beside `message` when it refuses a submit.

export const REASONS = ["required", "type", "date", "option", "too_long", "unknown"];
/** Characters (code points, as Python counts them) a text field may hold. */
export const MAX_TEXT = { shortText: 1_000, longText: 10_000 };

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const FIELD_ERROR = /^values\.([^:]+):\s*(.*)$/s;
// A message naming several fields: "values.color: …; values.name: required".
const NEXT_FIELD = /;\s*(?=values\.)/;
// The server's messages (form.py), for a server that sends no `errors` list.
const MESSAGE_REASONS = [
  [/^required$/, "required"],
  [/must be a (?:number|string)/, "type"],
  [/must be a date/, "date"],
  [/is not one of/, "option"],
  [/over the limit/, "too_long"],
  [/no such field/, "unknown"],
];

/** Every problem of `values` (by field name): unknown names (sorted), then the fields in order. */
export function checkValues(fields, values) {
  const known = new Set(fields.map((field) => field.name));
  const problems = Object.keys(values)
    .filter((name) => !known.has(name))
    .sort()
    .map((name) => ({ field: name, reason: "unknown" }));
  for (const field of fields) {
    const value = values[field.name];
    const reason = isEmpty(value) ? (field.required ? "required" : null) : check(field, value);
    if (reason) problems.push({ field: field.name, reason });
  }
  return problems;
}

function isEmpty(value) {
  if (Array.isArray(value)) return value.length === 0;
  return value === undefined || value === null || value === "";
}

function check(field, value) {
  if (field.type in MAX_TEXT) {
    if (typeof value !== "string") return "type";
    return [...value].length > MAX_TEXT[field.type] ? "too_long" : null;
  }
  if (field.type === "number") {
    return typeof value === "number" && Number.isFinite(value) ? null : "type";
  }
  if (field.type === "date") return isDate(value) ? null : "date";
  const allowed = new Set((field.options ?? []).map((option) => option.value));
  const chosen = field.type === "checkbox" && Array.isArray(value) ? value : [value];
  return chosen.every((item) => allowed.has(item)) ? null : "option";
}

/** YYYY-MM-DD, and a day that exists (no 2026-02-30). */
export function isDate(value) {
  const match = typeof value === "string" ? DATE.exec(value) : null;
  if (!match) return false;
  const [year, month, day] = match.slice(1).map(Number);
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // not Date.UTC: it reads years 0–99 as 1900–1999
  return (
    year >= 1 &&
    date.getUTCFullYear() === year &&
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day
  );
}

/**
 * The problems of a refused submit: from the envelope's `errors` list when the server sent one,
 * else the fields and rules its message names (`values.<field>: <rule>; …`). Each also carries
 * the server's words (`detail`), for a reason the page does not know.
 */
export function refusedFields(errors, message) {
  if (Array.isArray(errors) && errors.length) {
    return errors
      .filter((error) => typeof error?.field === "string")
      .map((error) => ({
        field: error.field.replace(/^values\./, ""),
        reason: REASONS.includes(error.reason) ? error.reason : null,
        detail: message ?? "",
      }));
  }
  const problems = [];
  for (const part of String(message ?? "").split(NEXT_FIELD)) {
    const match = FIELD_ERROR.exec(part);
    if (!match) continue;
    const reason = MESSAGE_REASONS.find(([pattern]) => pattern.test(match[2]))?.[1] ?? null;
    problems.push({ field: match[1], reason, detail: match[2] });
  }
  return problems;
}
