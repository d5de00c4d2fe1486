// A small, conservative markdown renderer for answers: text in, DOM nodes out.
//
//     container.replaceChildren(renderMarkdown("**営業時間**は [こちら](https://example.com)"));
//
// It never builds HTML strings: every piece of the text becomes a text node, so `<img onerror=…>`
// or `<script>` in an answer shows as the characters it is. What it understands: ATX headings,
// paragraphs (a line break is kept), `**bold**`, `*italic*`, `` `code` ``, fenced code blocks,
// bullet and numbered lists (nested by indentation), block quotes, rules, pipe tables,
// `[text](url)` links and bare URLs — links only to absolute http(s) URLs; any other link shows as
// its text. An image (`![alt](src)`) becomes a link to it: the page loads nothing an answer names.
//
// Deliberate oddities: markdown headings become h3–h6, under the page's own; `_` marks emphasis
// only between non-word characters (so `snake_case_names` stay as they are); a code fence that is
// not closed yet (an answer still streaming) runs to the end of the text.

import { h, link, safeHref } from "./dom.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:\s+(.*))?$/;
const TABLE_RULE = /^ {0,3}\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$/;
const BARE_URL = /^https?:\/\/[^\s<>"'`「」『』（）()、。，！？]+/i;
const TRAILING_PUNCTUATION = /[.,;:!?'"]+$/;
const ESCAPABLE = /[\\`*_{}[\]()#+\-.!|>~<]/;
const WORD = /[A-Za-z0-9]/;

export function renderMarkdown(source) {
  const fragment = document.createDocumentFragment();
  const lines = String(source ?? "")
    .replace(/\r\n?/g, "\n")
    .split("\n");
  fragment.append(...blocks(lines));
  return fragment;
}

const BLOCK_ENDS = "p, li, h3, h4, h5, h6, pre, blockquote, tr, th, td, br, hr";
// A snippet is cut out of a longer text: the markers of a pair it cut through are left alone.
const UNPAIRED_MARKERS = /\*\*+|__+|`+/g;

/**
 * The text of `source` without its markdown syntax — headings' `#`, backticks, emphasis, list
 * markers, link targets — on one line: a search snippet shown as plain text.
 *
 *     plainText("## 営業時間\n- **平日** 9時から")   // "営業時間 平日 9時から"
 */
export function plainText(source) {
  const box = h("div", {}, renderMarkdown(source));
  for (const element of box.querySelectorAll(BLOCK_ENDS)) element.after(" ");
  return box.textContent.replace(UNPAIRED_MARKERS, "").replace(/\s+/g, " ").trim();
}

/** Block-level nodes of `lines`. */
function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === "") {
      i += 1;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const [node, next] = codeBlock(lines, i, fence);
      out.push(node);
      i = next;
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const level = Math.min(heading[1].length + 2, 6);
      out.push(inline(h(`h${level}`), heading[2] ?? ""));
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      out.push(h("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        quoted.push(QUOTE.exec(lines[i])[1]);
        i += 1;
      }
      out.push(h("blockquote", {}, ...blocks(quoted)));
      continue;
    }
    if (ITEM.test(line)) {
      const [node, next] = list(lines, i);
      out.push(node);
      i = next;
      continue;
    }
    if (line.includes("|") && TABLE_RULE.test(lines[i + 1] ?? "") && lines[i + 1].includes("|")) {
      const [node, next] = table(lines, i);
      out.push(node);
      i = next;
      continue;
    }
    const paragraph = [];
    while (
      i < lines.length &&
      lines[i].trim() !== "" &&
      (paragraph.length === 0 || !startsBlock(lines[i]))
    ) {
      paragraph.push(lines[i].trim());
      i += 1;
    }
    const p = h("p");
    paragraph.forEach((text, index) => {
      if (index > 0) p.append(h("br"));
      inline(p, text);
    });
    out.push(p);
  }
  return out;
}

function startsBlock(line) {
  return (
    FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line)
  );
}

function codeBlock(lines, start, fence) {
  const marker = fence[1];
  const closing = new RegExp(`^ {0,3}${marker[0] === "`" ? "`" : "~"}{${marker.length},}\\s*$`);
  const body = [];
  let i = start + 1;
  while (i < lines.length && !closing.test(lines[i])) {
    body.push(lines[i]);
    i += 1;
  }
  const code = h("code", {}, body.join("\n"));
  const language = fence[2].replace(/[^\w+#.-]/g, "").slice(0, 32);
  if (language) code.dataset.language = language;
  return [h("pre", {}, code), i + 1];
}

/** A pipe table: a header row, its rule (`|---|:--:|`), then rows until a line without a pipe. */
function table(lines, start) {
  const aligns = cells(lines[start + 1]).map((rule) => {
    const left = rule.startsWith(":");
    const right = rule.endsWith(":");
    return left && right ? "center" : right ? "right" : null;
  });
  const row = (line, tag) =>
    h(
      "tr",
      {},
      cells(line).map((cell, index) =>
        inline(h(tag, { class: aligns[index] ? `align-${aligns[index]}` : null }), cell),
      ),
    );
  const body = h("tbody");
  let i = start + 2;
  while (i < lines.length && lines[i].includes("|") && lines[i].trim() !== "") {
    body.append(row(lines[i], "td"));
    i += 1;
  }
  const head = h("thead", {}, row(lines[start], "th"));
  return [h("div", { class: "table-wrap" }, h("table", {}, head, body)), i];
}

function cells(line) {
  const trimmed = line
    .trim()
    .replace(/^\|/, "")
    .replace(/(?<!\\)\|$/, "");
  return trimmed.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

function indentOf(line) {
  return line.length - line.trimStart().length;
}

function isOrdered(marker) {
  return /\d/.test(marker);
}

/** A list starting at `start`, with its items' nested blocks; returns it and the next line. */
function list(lines, start) {
  const first = ITEM.exec(lines[start]);
  const base = first[1].length;
  const ordered = isOrdered(first[2]);
  const node = h(ordered ? "ol" : "ul");
  if (ordered) {
    const number = Number.parseInt(first[2], 10);
    if (number !== 1) node.start = number;
  }
  let i = start;
  while (i < lines.length) {
    const item = ITEM.exec(lines[i]);
    if (!item || item[1].length !== base || isOrdered(item[2]) !== ordered) break;
    const content = base + item[2].length + 1;
    const body = [item[3] ?? ""];
    i += 1;
    while (i < lines.length) {
      const line = lines[i];
      if (line.trim() === "") {
        const next = nextFilled(lines, i);
        if (next === -1 || indentOf(lines[next]) <= base) break;
        body.push("");
        i += 1;
        continue;
      }
      const indent = indentOf(line);
      if (indent > base) {
        body.push(line.slice(Math.min(indent, content)));
      } else if (startsBlock(line)) {
        break;
      } else {
        body.push(line); // a lazy continuation of the item's paragraph
      }
      i += 1;
    }
    node.append(h("li", {}, ...blocks(body)));
    // Blank lines between items of the same list keep it one list.
    const next = nextFilled(lines, i);
    if (next !== -1 && next !== i) {
      const following = ITEM.exec(lines[next]);
      if (following && following[1].length === base && isOrdered(following[2]) === ordered) {
        i = next;
      }
    }
  }
  return [node, i];
}

function nextFilled(lines, from) {
  for (let i = from; i < lines.length; i += 1) if (lines[i].trim() !== "") return i;
  return -1;
}

/** Append the inline content of `text` to `parent` (and return it). */
function inline(parent, text, { links = true } = {}) {
  let buffer = "";
  const flush = () => {
    if (buffer) parent.append(buffer);
    buffer = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && ESCAPABLE.test(text[i + 1] ?? "")) {
      buffer += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      const run = text.slice(i).match(/^`+/)[0];
      const close = findCodeClose(text, run, i + run.length);
      if (close !== -1) {
        flush();
        let code = text.slice(i + run.length, close);
        if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
        parent.append(h("code", {}, code));
        i = close + run.length;
      } else {
        buffer += run;
        i += run.length;
      }
      continue;
    }
    if ((c === "*" || c === "_") && text.startsWith(c.repeat(3), i)) {
      const marker = c.repeat(3);
      const close = canOpen(text, i, marker) ? text.indexOf(marker, i + 3) : -1;
      if (close > i + 3 && !/\s/.test(text[close - 1])) {
        flush();
        const em = inline(h("em"), text.slice(i + 3, close), { links });
        parent.append(h("strong", {}, em));
        i = close + 3;
        continue;
      }
    }
    if (c === "*" || c === "_") {
      const marker = text[i + 1] === c ? c + c : c;
      const close = canOpen(text, i, marker)
        ? findEmphasisClose(text, marker, i + marker.length)
        : -1;
      if (close !== -1) {
        flush();
        const node = h(marker.length === 2 ? "strong" : "em");
        parent.append(inline(node, text.slice(i + marker.length, close), { links }));
        i = close + marker.length;
      } else {
        buffer += marker;
        i += marker.length;
      }
      continue;
    }
    if (c === "!" && text[i + 1] === "[" && links) {
      const found = parseLink(text, i + 1);
      if (found !== null) {
        flush();
        parent.append(link(found.href, found.label || found.href));
        i = found.end;
        continue;
      }
    }
    if (c === "[" && links) {
      const found = parseLink(text, i);
      if (found !== null) {
        flush();
        const label = inline(document.createDocumentFragment(), found.label, { links: false });
        parent.append(safeHref(found.href) === null ? label : link(found.href, label));
        i = found.end;
        continue;
      }
    }
    if ((c === "h" || c === "H") && links && !WORD.test(text[i - 1] ?? "")) {
      const match = BARE_URL.exec(text.slice(i));
      if (match) {
        const url = match[0].replace(TRAILING_PUNCTUATION, "");
        flush();
        parent.append(link(url, url));
        i += url.length;
        continue;
      }
    }
    buffer += c;
    i += 1;
  }
  flush();
  return parent;
}

function findCodeClose(text, run, from) {
  let at = text.indexOf(run, from);
  while (at !== -1) {
    const before = text[at - 1];
    const after = text[at + run.length];
    if (before !== "`" && after !== "`") return at;
    at = text.indexOf(run, at + 1);
  }
  return -1;
}

function canOpen(text, at, marker) {
  const after = text[at + marker.length];
  if (after === undefined || /\s/.test(after)) return false;
  return marker[0] === "*" || !WORD.test(text[at - 1] ?? "");
}

function findEmphasisClose(text, marker, from) {
  const char = marker[0];
  let at = from;
  while (at < text.length) {
    at = text.indexOf(marker, at);
    if (at === -1) return -1;
    const runEnd = at + marker.length;
    const opensDouble = marker.length === 1 && text[runEnd] === char;
    const validBefore = at > from && !/\s/.test(text[at - 1]);
    const validAfter = char === "*" || !WORD.test(text[runEnd] ?? "");
    if (opensDouble) {
      // `*a **b** c*`: a double run inside a single one is skipped over whole.
      at = runEnd + 1;
      continue;
    }
    if (validBefore && validAfter) return at;
    at = runEnd;
  }
  return -1;
}

/** `[label](href "title")` at `start`: `{label, href, end}`, or null. */
function parseLink(text, start) {
  let depth = 0;
  let i = start;
  for (; i < text.length; i += 1) {
    if (text[i] === "\\") {
      i += 1;
      continue;
    }
    if (text[i] === "[") depth += 1;
    else if (text[i] === "]") {
      depth -= 1;
      if (depth === 0) break;
    }
  }
  if (i >= text.length || text[i + 1] !== "(") return null;
  const labelEnd = i;
  depth = 0;
  let j = i + 1;
  for (; j < text.length; j += 1) {
    if (text[j] === "(") depth += 1;
    else if (text[j] === ")") {
      depth -= 1;
      if (depth === 0) break;
    }
  }
  if (j >= text.length) return null;
  const target = text.slice(labelEnd + 2, j).trim();
  let href = target.split(/\s+/)[0] ?? "";
  if (href.startsWith("<") && href.endsWith(">")) href = href.slice(1, -1);
  return { label: text.slice(start + 1, labelEnd), href, end: j + 1 };
}
