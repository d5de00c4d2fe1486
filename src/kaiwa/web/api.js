// What the page asks of the API beside the vendored client (vendor/kaiwa-client, a copy of
// clients/js/src that the page leaves as it is):
//
//     await deleteChat(apiRoot, apiKey, chatId);     // DELETE /chats/{id}: not in the client
//     await findAnswer(client, chatId, responseId);  // the stored message of a response
//     new KaiwaClient({ …, fetch: keepRefusals });   // then, after a 400:
//     takeRefusal(url)                               // that answer's `errors` list, or null
//
// Deliberate oddity: the client's errors carry the envelope's `message` and `error_code` only,
// while a refused form submit also lists every field and reason (`errors`). The page hands the
// client a `fetch` that keeps that list by request URL, for the form to take once.

import { errorFromAnswer } from "./vendor/kaiwa-client/errors.js";

const refusals = new Map(); // request URL -> the `errors` list of its last 400
const RECENT_MESSAGES = 20;

/** A request to `apiRoot + path` with the key, as the client sends it. */
export function authorizedFetch(apiRoot, apiKey, path, init = {}) {
  return fetch(`${apiRoot}${path}`, {
    ...init,
    headers: { ...init.headers, "x-api-key": apiKey ?? "" },
  });
}

/** Delete a chat and its messages; a chat already gone counts as deleted. */
export async function deleteChat(apiRoot, apiKey, chatId) {
  const path = `/chats/${encodeURIComponent(chatId)}`;
  const response = await authorizedFetch(apiRoot, apiKey, path, {
    method: "DELETE",
    headers: { accept: "application/json" },
  });
  if (response.ok || response.status === 404) return;
  const body = await response.json().catch(() => null);
  throw errorFromAnswer(response.status, response.statusText, body, response.headers);
}

/** The stored answer of a response — the events do not name its message — or null. */
export async function findAnswer(client, chatId, responseId) {
  const head = await client.messages.list(chatId, { limit: 1 });
  const total = head.pagination?.total_records ?? 0;
  const offset = Math.max(0, total - RECENT_MESSAGES);
  const tail = await client.messages.list(chatId, { limit: RECENT_MESSAGES, offset });
  const answer = (m) => m.role === "assistant" && m.meta?.response_id === responseId;
  return tail.items.find(answer) ?? null;
}

/** `fetch`, keeping the `errors` list of a 400 answer (see the top of this module). */
export async function keepRefusals(input, init) {
  const response = await fetch(input, init);
  if (response.status === 400) {
    const body = await response
      .clone()
      .json()
      .catch(() => null);
    if (Array.isArray(body?.errors)) refusals.set(normalize(input), body.errors);
  }
  return response;
}

export function takeRefusal(url) {
  const key = normalize(url);
  const errors = refusals.get(key) ?? null;
  refusals.delete(key);
  return errors;
}

function normalize(input) {
  return new URL(input instanceof Request ? input.url : String(input), window.location.href).href;
}
