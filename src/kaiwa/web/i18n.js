// The page's language — Japanese or English — and its strings, numbers and times in it.
//
//     t("send")                                   // "送信" | "Send"
//     t("results", { count: 3 })                  // "3 件" | "3 results"
//     formatTime("2026-04-01T09:30:00Z")          // "18:30" today, else with the date
//     localize(document);                         // fill `data-i18n…` elements and attributes
//     onLanguageChange(() => …);  setLanguage("en");
//
// The language comes from the browser's preferred languages (`navigator.languages`) unless the
// user chose one with the switch: that choice is kept in localStorage, as a preference that may
// outlive the tab (unlike the API key, which session.js keeps in the tab only).

import { CATALOGUES } from "./strings.js";

export const LANGUAGES = ["ja", "en"];
const FALLBACK = "en";
const STORAGE_KEY = "kaiwa.language";
const ATTRIBUTES = ["aria-label", "title", "placeholder"];

let current = readChoice() ?? detectLanguage();
const listeners = new Set();

/** The first of the browser's languages that the page speaks, else English. */
export function detectLanguage(preferred = navigator.languages ?? [navigator.language]) {
  for (const tag of preferred ?? []) {
    const primary = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(primary)) return primary;
  }
  return FALLBACK;
}

export function language() {
  return current;
}

/** Switch and remember the choice; listeners redraw what they showed. */
export function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) return;
  try {
    window.localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // storage disabled: the choice holds until the page is reloaded
  }
  if (lang === current) return;
  current = lang;
  for (const listener of listeners) listener(lang);
}

export function onLanguageChange(listener) {
  listeners.add(listener);
}

/** The string `key` in the current language, with `{name}`s filled from `params`. */
export function t(key, params = {}) {
  let entry = CATALOGUES[current][key] ?? CATALOGUES[FALLBACK][key];
  if (entry === undefined) return key;
  if (typeof entry === "object") entry = pluralForm(entry, params.count ?? 0);
  return entry.replace(/\{(\w+)\}/g, (whole, name) => {
    if (!(name in params)) return whole;
    const value = params[name];
    return typeof value === "number" ? formatNumber(value) : String(value);
  });
}

function pluralForm(forms, count) {
  if (count === 0 && forms[0] !== undefined) return forms[0];
  const category = new Intl.PluralRules(current).select(count);
  return forms[category] ?? forms.other;
}

/** The locale for `Intl`: the browser's own variant of the language when it has one (en-GB). */
function locale() {
  const tags = navigator.languages ?? [navigator.language];
  return tags.find((tag) => String(tag).toLowerCase().split("-")[0] === current) ?? current;
}

export function formatNumber(value, options = {}) {
  return new Intl.NumberFormat(locale(), options).format(value);
}

/** A message's time, short: the time of day today, with the date on other days. */
export function formatTime(value, now = new Date()) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  const options = { hour: "2-digit", minute: "2-digit" };
  if (date.toDateString() !== now.toDateString()) {
    options.month = "short";
    options.day = "numeric";
    if (date.getFullYear() !== now.getFullYear()) options.year = "numeric";
  }
  return new Intl.DateTimeFormat(locale(), options).format(date);
}

/** The full date and time (a tooltip). */
export function formatDateTime(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  return new Intl.DateTimeFormat(locale(), { dateStyle: "full", timeStyle: "short" }).format(date);
}

/**
 * Fill the page's own strings: `data-i18n="key"` sets an element's text, `data-i18n-title`
 * (`-aria-label`, `-placeholder`) that attribute. The document's `lang` follows.
 */
export function localize(root = document) {
  document.documentElement.lang = current;
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const name of ATTRIBUTES) {
    for (const element of root.querySelectorAll(`[data-i18n-${name}]`)) {
      element.setAttribute(name, t(element.getAttribute(`data-i18n-${name}`)));
    }
  }
}

function readChoice() {
  try {
    const stored = window.localStorage.getItem(STORAGE_KEY);
    return LANGUAGES.includes(stored) ? stored : null;
  } catch {
    return null;
  }
}
