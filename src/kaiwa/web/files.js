// Downloading an attached file: its URL takes the API key as a header, so a plain link would not
// do; the bytes are fetched, then saved under the file's own name.
//
//     await downloadFile(client.baseUrl, apiKey, { uuid, original_name });

import { authorizedFetch } from "./api.js";
import { h } from "./dom.js";

const REVOKE_AFTER_MS = 10_000;

export async function downloadFile(apiRoot, apiKey, file) {
  const uuid = file.uuid ?? file.id;
  const path = `/chats/files/${encodeURIComponent(uuid)}`;
  const response = await authorizedFetch(apiRoot, apiKey, path);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  const anchor = h("a", { href: url, download: file.original_name ?? file.name ?? "file" });
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), REVOKE_AFTER_MS);
}
