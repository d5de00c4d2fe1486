// Elements built from text and properties, never from HTML strings: nothing the server or the
// model sends is ever parsed as markup.
//
//     h("button", { type: "button", class: "link", onclick: () => … }, "Stop")
//     h("p", {}, "text with <b>tags</b> shown as they are")
//
// A property the element has (`type`, `value`, `disabled`, `hidden`, `htmlFor`…) is set as a
// property; anything else (`aria-*`, `role`, `data-*`) as an attribute; `on…` adds a listener.

export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name.includes("-") || !(name in element)) {
      element.setAttribute(name, value === true ? "" : String(value));
    } else element[name] = value;
  }
  append(element, children);
  return element;
}

/** Append nodes and strings (as text); null, undefined and false are skipped. */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : String(child));
  }
  return parent;
}

/** Replace every child of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let counter = 0;

/** A new id for `id`/`for`/`aria-describedby` pairs. */
export function uid(prefix = "k") {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** The URL if it is an absolute http(s) URL, else null: the only links the page makes. */
export function safeHref(raw) {
  if (typeof raw !== "string") return null;
  let url;
  try {
    url = new URL(raw.trim());
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

/** A link that opens apart from the page and tells the target nothing; text when unsafe. */
export function link(href, ...children) {
  const safe = safeHref(href);
  if (safe === null) return h("span", {}, ...children);
  return h("a", { href: safe, target: "_blank", rel: "noopener noreferrer nofollow" }, ...children);
}

/** Text of Japanese (kana) is marked `lang="ja"` so that kanji take Japanese glyph forms. */
export function markLanguage(element, text) {
  if (/[\u3040-\u30ff]/.test(text)) element.lang = "ja";
  else element.removeAttribute("lang");
}

/**
 * An Enter (or other key) that confirms an IME conversion — Japanese input — rather than acting:
 * Chromium and Firefox set `isComposing`; Safari sends the confirming Enter after
 * `compositionend`, with isComposing false but keyCode 229.
 */
export function isComposing(event) {
  return event.isComposing || event.keyCode === 229;
}

export function formatBytes(size) {
  if (typeof size !== "number") return "";
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}
