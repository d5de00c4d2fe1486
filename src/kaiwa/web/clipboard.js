// Copying text to the clipboard.
//
//     await copyText(answerMarkdown);   // throws if the browser refused
//
// Deliberate oddity: `navigator.clipboard` exists only in secure contexts (https, localhost); a
// kaiwa reached over plain http on a LAN has none, so the old `execCommand("copy")` on a hidden
// text area stands in.

import { h } from "./dom.js";

export async function copyText(text) {
  if (window.isSecureContext && navigator.clipboard?.writeText) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = h("textarea", { value: text, readOnly: true, class: "visually-hidden" });
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("copy refused");
}
