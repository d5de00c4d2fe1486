// The namespaces of `KaiwaClient`: one class per resource of the API, each method one endpoint.
//
//     await client.chats.create({ name: "support", agentId });            // -> Chat
//     await client.messages.send(chat.id, { message: "…", agentId });     // -> string
//     client.messages.stream(chat.id, { message: "…", agentId });         // -> KaiwaStream
//     for await (const chat of client.chats.iterAll()) { … }              // every page, lazily
//
// Options are camelCase and become the API's snake_case fields; objects the API defines (agent
// tools, `meta`, form values) pass through as they are. Unset options are left out, so the
// server's defaults apply.

import { StreamCursor } from "./cursor.js";
import { KaiwaError } from "./errors.js";
import { seg } from "./http.js";
import { KaiwaStream } from "./stream.js";

const DEFAULT_LIMIT = 50;
const PAGE_SIZE = 100;

/** A JSON body without the fields left unset (undefined or null). */
function body(fields) {
  return Object.fromEntries(
    Object.entries(fields).filter(([, value]) => value !== undefined && value !== null),
  );
}

function page(data, pagination) {
  const items = list(data);
  // From the numbers, not `next_page`: that URL is absolute as the server saw it, which a reverse
  // proxy may have rewritten.
  const hasNext =
    pagination !== null && pagination.offset + pagination.limit < pagination.total_records;
  return { items, pagination, hasNext };
}

function list(data) {
  if (!Array.isArray(data)) throw new KaiwaError(`Expected a list in the envelope's data`);
  return data;
}

function text(data) {
  if (typeof data !== "string") throw new KaiwaError(`Expected the answer's text in the envelope`);
  return data;
}

async function* paginate(fetchPage) {
  let offset = 0;
  for (;;) {
    const result = await fetchPage(offset);
    yield* result.items;
    if (!result.hasNext) return;
    offset = result.pagination.offset + result.pagination.limit;
  }
}

/**
 * The `Idempotency-Key` header of a request that starts an answer: the caller's key, else a new
 * one. Repeating a request with the same key gets the first one's answer, never a second one.
 */
function idempotent(options) {
  return { "idempotency-key": options.idempotencyKey ?? newKey() };
}

function newKey() {
  // `randomUUID` exists only in secure contexts (https, localhost); `getRandomValues` everywhere.
  if (typeof globalThis.crypto?.randomUUID === "function") return globalThis.crypto.randomUUID();
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The send options shared by send, stream and regenerate. */
function sendFields(options) {
  return {
    agent_id: options.agentId,
    external_user_id: options.externalUserId,
    include_tool_tags: options.includeToolTags,
    on_disconnect: options.onDisconnect,
    if_busy: options.ifBusy,
  };
}

class Resource {
  constructor(client) {
    this._client = client;
  }

  get _http() {
    return this._client._http;
  }

  _stream(initial, { chatId, responseId = null, after = null, token = null, signal = null }) {
    const http = this._http;
    const cursor = new StreamCursor({ chatId, policy: http.resume, responseId, after });
    const cancel = (chat, response) => this._client.responses.cancel(chat, response);
    return new KaiwaStream(http, { initial, cursor, token, signal, cancel });
  }
}

export class Chats extends Resource {
  create({ name, agentId, externalUserId } = {}) {
    const json = body({ name, agent_id: agentId, external_user_id: externalUserId });
    return this._http.call({ method: "POST", path: "/chats", json });
  }

  /** One page of chats, newest first unless `orderBy` says otherwise. */
  list({ agentId, externalUserId, orderBy, limit = DEFAULT_LIMIT, offset = 0 } = {}) {
    const query = {
      agent_id: agentId,
      external_user_id: externalUserId,
      order_by: orderBy,
      limit,
      offset,
    };
    return this._http.call({ method: "GET", path: "/chats", query }, page);
  }

  /** Every chat, one page at a time as the iteration goes. */
  iterAll({ pageSize = PAGE_SIZE, ...filters } = {}) {
    return paginate((offset) => this.list({ ...filters, limit: pageSize, offset }));
  }

  /** Rename by hand: the chat's title is no longer generated. */
  rename(chatId, { name }) {
    return this._http.call({ method: "PUT", path: `/chats/${seg(chatId)}`, json: { name } });
  }
}

export class Messages extends Resource {
  /** One page of the chat's messages, oldest first. */
  list(chatId, { limit = DEFAULT_LIMIT, offset = 0 } = {}) {
    const query = { limit, offset };
    return this._http.call({ method: "GET", path: `/chats/${seg(chatId)}/messages`, query }, page);
  }

  iterAll(chatId, { pageSize = PAGE_SIZE } = {}) {
    return paginate((offset) => this.list(chatId, { limit: pageSize, offset }));
  }

  /**
   * Send a message and wait for the whole answer (`stream: false`): its text. The wait is one
   * silent read, so `timeout` (ms) may need to exceed the client's for long answers.
   */
  send(chatId, options) {
    return this._http.call(this.#send(chatId, options, false), text);
  }

  /** Send a message and stream the answer. */
  stream(chatId, options) {
    return this._stream(this.#send(chatId, options, true), { chatId, signal: options.signal });
  }

  /** A new answer to the chat's last user message (the previous one is kept, superseded). */
  regenerate(chatId, options) {
    return this._http.call(this.#regenerate(chatId, options, false), text);
  }

  /** `regenerate`, streamed. */
  streamRegenerate(chatId, options) {
    return this._stream(this.#regenerate(chatId, options, true), {
      chatId,
      signal: options.signal,
    });
  }

  #send(chatId, options, stream) {
    const json = body({
      message: options.message,
      stream,
      attached_file_uuids: options.attachedFileUuids,
      ...sendFields(options),
    });
    const path = `/chats/${seg(chatId)}/messages`;
    return {
      method: "POST",
      path,
      json,
      headers: idempotent(options),
      timeout: options.timeout,
      signal: stream ? undefined : options.signal,
    };
  }

  #regenerate(chatId, options, stream) {
    const json = body({ stream, ...sendFields(options) });
    const path = `/chats/${seg(chatId)}/regenerate`;
    return {
      method: "POST",
      path,
      json,
      headers: idempotent(options),
      timeout: options.timeout,
      signal: stream ? undefined : options.signal,
    };
  }
}

export class Feedback extends Resource {
  /** An end user's verdict on an answer; giving it again replaces it. */
  create(chatId, messageId, { type, content, externalUserId }) {
    const path = `/chats/${seg(chatId)}/messages/${seg(messageId)}/feedbacks`;
    const json = body({ type, content, external_user_id: externalUserId });
    return this._http.call({ method: "POST", path, json });
  }
}

/** [ext] One response of a chat: its status, its stop, its events. */
export class Responses extends Resource {
  get(chatId, responseId) {
    return this._http.call({ method: "GET", path: responsePath(chatId, responseId) });
  }

  /** Stop the response; idempotent (an ended one is left as it is). */
  cancel(chatId, responseId) {
    return this._http.call({ method: "POST", path: `${responsePath(chatId, responseId)}/cancel` });
  }

  /**
   * Follow a response's events: replayed after `after`, then live until the end. With `token`
   * (the `resume_token` of `response.created`) no API key is sent: a page can reattach with it.
   */
  events(chatId, responseId, { after = null, token = null, signal = null } = {}) {
    const initial = {
      method: "GET",
      path: `${responsePath(chatId, responseId)}/events`,
      query: { after, token },
      auth: token === null,
    };
    return this._stream(initial, { chatId, responseId, after, token, signal });
  }
}

function responsePath(chatId, responseId) {
  return `/chats/${seg(chatId)}/responses/${seg(responseId)}`;
}

/** A response paused on a form (`status: "awaiting_form"`) goes on once the form is submitted. */
export class Forms extends Resource {
  /** Submit the values and wait for the rest of the answer (`stream: false`): its text. */
  submit(chatId, formRequestId, values, options = {}) {
    return this._http.call(formSpec(chatId, formRequestId, values, options, false), text);
  }

  /** Submit the values and stream the rest of the answer (a new response of the same turn). */
  stream(chatId, formRequestId, values, options = {}) {
    const initial = formSpec(chatId, formRequestId, values, options, true);
    return this._stream(initial, { chatId, signal: options.signal });
  }
}

function formSpec(chatId, formRequestId, values, options, stream) {
  const path = `/chats/${seg(chatId)}/form-requests/${seg(formRequestId)}/submit`;
  const json = body({
    values,
    stream,
    agent_id: options.agentId,
    external_user_id: options.externalUserId,
    include_tool_tags: options.includeToolTags,
    on_disconnect: options.onDisconnect,
  });
  const signal = stream ? undefined : options.signal;
  const headers = idempotent(options);
  return { method: "POST", path, json, headers, timeout: options.timeout, signal };
}

export class Files extends Resource {
  /**
   * Upload a file (a `File`, `Blob`, `Uint8Array` or `ArrayBuffer`) to attach to messages:
   * `{uuid, original_name, content_type, size, file_url, scope, ...}`.
   */
  upload(file, { filename, contentType, scope } = {}) {
    const form = new FormData();
    form.append("file", asBlob(file, contentType), filename ?? fileName(file, "upload"));
    if (scope !== undefined) form.append("data", JSON.stringify({ scope }));
    return this._http.call({ method: "POST", path: "/chats/upload-file", form });
  }
}

/** [ext] Agents of the workspace (management keys), and the published ones (any key). */
export class Agents extends Resource {
  /** The agents that have a published version, as published. */
  published() {
    return this._http.call({ method: "GET", path: "/chats/published-agents" }, list);
  }

  create(fields) {
    return this._http.call({ method: "POST", path: "/agents", json: agentFields(fields) });
  }

  list({ limit = DEFAULT_LIMIT, offset = 0 } = {}) {
    return this._http.call({ method: "GET", path: "/agents", query: { limit, offset } }, page);
  }

  iterAll({ pageSize = PAGE_SIZE } = {}) {
    return paginate((offset) => this.list({ limit: pageSize, offset }));
  }

  get(agentId) {
    return this._http.call({ method: "GET", path: `/agents/${seg(agentId)}` });
  }

  /** Change the fields given (the others stay); chats see it once published. */
  update(agentId, fields) {
    const json = agentFields(fields);
    return this._http.call({ method: "PATCH", path: `/agents/${seg(agentId)}`, json });
  }

  async delete(agentId) {
    await this._http.call({ method: "DELETE", path: `/agents/${seg(agentId)}` });
  }

  /** Snapshot the agent as a new version: what its chats run from now on. */
  publish(agentId) {
    return this._http.call({ method: "POST", path: `/agents/${seg(agentId)}/publish` });
  }
}

function agentFields(fields = {}) {
  return body({
    name: fields.name,
    description: fields.description,
    system_prompt: fields.systemPrompt,
    llm_model: fields.llmModel,
    unified_tools: fields.unifiedTools,
    suggested_questions: fields.suggestedQuestions,
    meta: fields.meta,
  });
}

/** [ext] Knowledge bases of the workspace and their documents (management keys). */
export class KnowledgeBases extends Resource {
  create({ name, description } = {}) {
    const json = body({ name, description });
    return this._http.call({ method: "POST", path: "/knowledge-bases", json });
  }

  list({ limit = DEFAULT_LIMIT, offset = 0 } = {}) {
    const query = { limit, offset };
    return this._http.call({ method: "GET", path: "/knowledge-bases", query }, page);
  }

  get(knowledgeBaseId) {
    return this._http.call({ method: "GET", path: kbPath(knowledgeBaseId) });
  }

  update(knowledgeBaseId, { name, description } = {}) {
    const json = body({ name, description });
    return this._http.call({ method: "PATCH", path: kbPath(knowledgeBaseId), json });
  }

  async delete(knowledgeBaseId) {
    await this._http.call({ method: "DELETE", path: kbPath(knowledgeBaseId) });
  }

  /**
   * Add a document — `{title, text}`, or `{file, filename, title}` uploaded as multipart. It is
   * indexed in the background: its `status` is `processing`, then `ready` (or `failed`).
   */
  addDocument(knowledgeBaseId, { title, text: content, file, filename } = {}) {
    const path = `${kbPath(knowledgeBaseId)}/documents`;
    if (file === undefined) {
      return this._http.call({ method: "POST", path, json: body({ title, text: content }) });
    }
    const form = new FormData();
    form.append("file", asBlob(file), filename ?? fileName(file, "document"));
    if (title !== undefined) form.append("title", title);
    return this._http.call({ method: "POST", path, form });
  }

  listDocuments(knowledgeBaseId, { limit = DEFAULT_LIMIT, offset = 0 } = {}) {
    const path = `${kbPath(knowledgeBaseId)}/documents`;
    return this._http.call({ method: "GET", path, query: { limit, offset } }, page);
  }

  getDocument(knowledgeBaseId, documentId) {
    const path = `${kbPath(knowledgeBaseId)}/documents/${seg(documentId)}`;
    return this._http.call({ method: "GET", path });
  }

  async deleteDocument(knowledgeBaseId, documentId) {
    const path = `${kbPath(knowledgeBaseId)}/documents/${seg(documentId)}`;
    await this._http.call({ method: "DELETE", path });
  }

  /** The chunks that best answer `query`, best first. */
  search(knowledgeBaseId, { query, topK } = {}) {
    const path = `${kbPath(knowledgeBaseId)}/search`;
    return this._http.call({ method: "POST", path, json: body({ query, top_k: topK }) }, list);
  }
}

function kbPath(knowledgeBaseId) {
  return `/knowledge-bases/${seg(knowledgeBaseId)}`;
}

function asBlob(file, contentType) {
  if (file instanceof Blob) return file;
  return new Blob([file], contentType ? { type: contentType } : {});
}

function fileName(file, fallback) {
  return typeof file?.name === "string" && file.name ? file.name : fallback;
}
