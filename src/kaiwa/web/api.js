// What the page asks of the API beside the vendored client (vendor/kaiwa-client, a copy of
// clients/js/src that the page leaves as it is):
//
//     await deleteChat(apiRoot, apiKey, chatId);     // DELETE /chats/{id}: not in the client
//     await findAnswer(client, chatId, responseId);  // the stored message of a response

import { errorFromAnswer } from "./vendor/kaiwa-client/errors.js";

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
