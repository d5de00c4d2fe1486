// Type declarations of kaiwa-client, written by hand: the client, its resources and streams.
// Events are in events.d.ts, errors in errors.d.ts.

import type {
  EventType,
  KaiwaEvent,
  ResponseError,
  ResponseStatus,
  StepEnd,
  StepStart,
  StreamEvent,
  TokenUsage,
} from "./events.js";

export * from "./events.js";
export * from "./errors.js";

export declare const EVENT_TYPES: readonly EventType[];

// -- what the API returns --------------------------------------------------------------------

export interface Pagination {
  limit: number;
  offset: number;
  total_records: number;
  total_pages: number;
  /** 1-based. */
  current_page: number;
  next_page: string | null;
  prev_page: string | null;
}

export interface Page<T> {
  items: T[];
  pagination: Pagination | null;
  /** More after this page? (From the numbers, not `next_page`.) */
  hasNext: boolean;
}

export interface Chat {
  id: number;
  name: string;
  created_at: string;
  updated_at: string;
  external_user_id: string | null;
  meta: { external_user_id: string | null; conversation_agent_id: string | null };
}

export interface Message {
  id: number;
  group_id: string;
  role: "user" | "assistant" | "system";
  content: string;
  created_at: string;
  meta: {
    agent_profile?: unknown;
    reasoning_steps?: Array<Record<string, unknown>> | null;
    token_usage?: TokenUsage | null;
    response_time_ms?: number | null;
    /** [ext] */
    status?: ResponseStatus | null;
    /** [ext] The response that wrote this message (assistant messages). */
    response_id?: string | null;
    /** [ext] True for an answer replaced by a regenerated one. */
    superseded?: boolean;
  };
  attached_files: Array<Record<string, unknown>>;
}

export interface Agent {
  id: string;
  workspace_id?: string | null;
  name: string;
  description?: string | null;
  system_prompt?: string | null;
  /** `provider/model`, e.g. `builtin/extractive`. */
  llm_model?: string | null;
  unified_tools: Array<Record<string, unknown>>;
  suggested_questions: string[];
  meta: Record<string, unknown>;
  publish_state?: "public" | "private" | null;
  agent_type?: string | null;
  use_search?: boolean;
  /** The published version shown, or null when the agent was never published. */
  version?: number | null;
  created_at?: string | null;
  updated_at?: string | null;
}

export type FeedbackType = "sys_helpful" | "sys_improve";

export interface Feedback {
  id: number;
  chat_id: number;
  message_id: number;
  type: FeedbackType;
  content: string;
  external_user_id: string | null;
  created_at: string;
  updated_at: string;
}

/** [ext] One response as the status and cancel endpoints report it. */
export interface ResponseInfo {
  id: string;
  chat_id: number;
  status: ResponseStatus;
  model: string | null;
  /** The final text, or the text so far while it runs. */
  final_text: string;
  usage: TokenUsage | null;
  steps: Array<Record<string, unknown>>;
  error: { code: number; message: string | null } | null;
  user_message_id: number | null;
  assistant_message_id: number | null;
  created_at: string | null;
  finished_at: string | null;
}

export type FileScope = "persistent" | "ephemeral";

export interface UploadedFile {
  uuid: string;
  original_name: string;
  content_type: string;
  size: number;
  /** The download URL; it takes the same `x-api-key`. */
  file_url: string;
  scope: FileScope;
  /** [ext] */
  created_at?: string;
  /** [ext] When an ephemeral file expires unless a message has it attached. */
  expires_at?: string | null;
  /** [ext] Why the file's text could not be extracted, if it could not. */
  extraction_error?: string | null;
}

export interface KnowledgeBase {
  id: string;
  name: string;
  description: string;
  document_count: number;
  created_at: string;
  updated_at: string;
}

export interface KnowledgeDocument {
  id: string;
  knowledge_base_id: string;
  title: string;
  source: string;
  content_type: string;
  size: number;
  status: "processing" | "ready" | "failed";
  error: string | null;
  chunk_count: number;
  created_at: string;
  updated_at: string;
}

export interface SearchHit {
  document_id: string;
  title: string;
  chunk_id: number;
  snippet: string;
  /** In (0, 1]. */
  score: number;
}

// -- the client ------------------------------------------------------------------------------

export interface ResumePolicy {
  /** Reconnections in a row without a new event before giving up; 0 turns resuming off. */
  attempts?: number;
  /** Milliseconds before the first reconnection; doubled for each further one. */
  backoff?: number;
  maxBackoff?: number;
}

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /** With or without `/api/v1`; default `KAIWA_BASE_URL` (Node), else http://127.0.0.1:8000. */
  baseUrl?: string;
  /** Sent as `x-api-key`; default `KAIWA_API_KEY` (Node). */
  apiKey?: string | null;
  /** Milliseconds a call waits for its answer, and a stream for its next bytes (90 000). */
  timeout?: number;
  resume?: ResumePolicy;
  headers?: Record<string, string>;
  /** Replaces `globalThis.fetch` (proxies, custom agents, tests). */
  fetch?: FetchLike;
}

export declare const DEFAULT_TIMEOUT: number;

export declare class KaiwaClient {
  constructor(options?: ClientOptions);
  /** The API's root, `…/api/v1`. */
  readonly baseUrl: string;
  readonly chats: Chats;
  readonly messages: Messages;
  readonly feedback: FeedbackResource;
  readonly responses: Responses;
  readonly forms: Forms;
  readonly files: Files;
  readonly agents: Agents;
  readonly knowledgeBases: KnowledgeBases;
}

export type OrderBy = "created_at" | "-created_at" | "asc" | "ascending" | "desc" | "descending";

export interface ListOptions {
  limit?: number;
  offset?: number;
}

export interface ChatFilters {
  agentId?: string;
  externalUserId?: string;
  orderBy?: OrderBy;
}

export declare class Chats {
  create(options: { name: string; agentId: string; externalUserId?: string }): Promise<Chat>;
  /** One page of chats, newest first unless `orderBy` says otherwise. */
  list(options?: ChatFilters & ListOptions): Promise<Page<Chat>>;
  /** Every chat, one page at a time as the iteration goes. */
  iterAll(options?: ChatFilters & { pageSize?: number }): AsyncGenerator<Chat, void, undefined>;
  /** Rename by hand: the chat's title is no longer generated. */
  rename(chatId: number, options: { name: string }): Promise<Chat>;
}

export interface TurnOptions {
  agentId: string;
  externalUserId?: string;
  includeToolTags?: boolean;
  /** [ext] `continue` (default): a dropped client does not stop the answer; `cancel`: it does. */
  onDisconnect?: "continue" | "cancel";
  /** [ext] A response already runs on the chat: `reject` (409, default) or `interrupt` it. */
  ifBusy?: "reject" | "interrupt";
  /**
   * Sent as `Idempotency-Key` (a new one when not given): repeating the call with the same key
   * gets the first call's answer, never a second one.
   */
  idempotencyKey?: string;
}

export interface SendOptions extends TurnOptions {
  message: string;
  attachedFileUuids?: string[];
}

export interface WaitOptions {
  /** Milliseconds to wait for the whole answer (default: the client's `timeout`). */
  timeout?: number;
  /** Stops waiting (the answer goes on on the server); the call rejects with the reason. */
  signal?: AbortSignal;
}

export interface StreamOptions {
  /** Aborting it cancels the response (`POST …/cancel`); the stream ends with `completed`. */
  signal?: AbortSignal;
}

export declare class Messages {
  /** One page of the chat's messages, oldest first. */
  list(chatId: number, options?: ListOptions): Promise<Page<Message>>;
  iterAll(
    chatId: number,
    options?: { pageSize?: number },
  ): AsyncGenerator<Message, void, undefined>;
  /** Send a message and wait for the whole answer (`stream: false`): its text. */
  send(chatId: number, options: SendOptions & WaitOptions): Promise<string>;
  /** Send a message and stream the answer. */
  stream(chatId: number, options: SendOptions & StreamOptions): KaiwaStream;
  /** A new answer to the chat's last user message (the previous one is kept, superseded). */
  regenerate(chatId: number, options: TurnOptions & WaitOptions): Promise<string>;
  streamRegenerate(chatId: number, options: TurnOptions & StreamOptions): KaiwaStream;
}

export declare class FeedbackResource {
  /** An end user's verdict on an answer; giving it again replaces it. */
  create(
    chatId: number,
    messageId: number,
    options: { type: FeedbackType; content?: string; externalUserId?: string },
  ): Promise<Feedback>;
}

export declare class Responses {
  get(chatId: number, responseId: string): Promise<ResponseInfo>;
  /** Stop the response; idempotent (an ended one is left as it is). */
  cancel(chatId: number, responseId: string): Promise<ResponseInfo>;
  /**
   * Follow a response's events: replayed after `after`, then live until the end. With `token`
   * (`response.created.resume_token`) no API key is sent.
   */
  events(
    chatId: number,
    responseId: string,
    options?: { after?: number | null; token?: string | null; signal?: AbortSignal | null },
  ): KaiwaStream;
}

export interface FormOptions {
  /** When given, it must be the chat's agent. */
  agentId?: string;
  /** Sent as `Idempotency-Key` (a new one when not given). */
  idempotencyKey?: string;
  externalUserId?: string;
  includeToolTags?: boolean;
  onDisconnect?: "continue" | "cancel";
}

export declare class Forms {
  /**
   * Submit a form's values and wait for the rest of the answer (`stream: false`): its text.
   * A bad value is a `BadRequestError` naming the field; a second submit a `ConflictError`.
   */
  submit(
    chatId: number,
    formRequestId: string,
    values: Record<string, unknown>,
    options?: FormOptions & WaitOptions,
  ): Promise<string>;
  /** Submit a form's values and stream the rest of the answer (a new response of the turn). */
  stream(
    chatId: number,
    formRequestId: string,
    values: Record<string, unknown>,
    options?: FormOptions & StreamOptions,
  ): KaiwaStream;
}

export declare class Files {
  /** Upload a file to attach to messages (multipart `file`, and `data` = `{"scope"}`). */
  upload(
    file: Blob | Uint8Array | ArrayBuffer,
    options?: { filename?: string; contentType?: string; scope?: FileScope },
  ): Promise<UploadedFile>;
}

export interface AgentFields {
  name?: string;
  description?: string;
  systemPrompt?: string;
  /** `provider/model`. */
  llmModel?: string;
  unifiedTools?: Array<Record<string, unknown>>;
  suggestedQuestions?: string[];
  meta?: Record<string, unknown>;
}

export declare class Agents {
  /** The agents that have a published version, as published (any key). */
  published(): Promise<Agent[]>;
  create(fields: AgentFields & { name: string }): Promise<Agent>;
  list(options?: ListOptions): Promise<Page<Agent>>;
  iterAll(options?: { pageSize?: number }): AsyncGenerator<Agent, void, undefined>;
  get(agentId: string): Promise<Agent>;
  /** Change the fields given (the others stay); chats see it once published. */
  update(agentId: string, fields: AgentFields): Promise<Agent>;
  delete(agentId: string): Promise<void>;
  /** Snapshot the agent as a new version: what its chats run from now on. */
  publish(agentId: string): Promise<Agent>;
}

export declare class KnowledgeBases {
  create(options: { name: string; description?: string }): Promise<KnowledgeBase>;
  list(options?: ListOptions): Promise<Page<KnowledgeBase>>;
  get(knowledgeBaseId: string): Promise<KnowledgeBase>;
  update(
    knowledgeBaseId: string,
    options: { name?: string; description?: string },
  ): Promise<KnowledgeBase>;
  delete(knowledgeBaseId: string): Promise<void>;
  /** Add a document, indexed in the background (`status` `processing`, then `ready`/`failed`). */
  addDocument(
    knowledgeBaseId: string,
    document:
      | { title?: string; text: string }
      | { file: Blob | Uint8Array | ArrayBuffer; filename?: string; title?: string },
  ): Promise<KnowledgeDocument>;
  listDocuments(knowledgeBaseId: string, options?: ListOptions): Promise<Page<KnowledgeDocument>>;
  getDocument(knowledgeBaseId: string, documentId: string): Promise<KnowledgeDocument>;
  deleteDocument(knowledgeBaseId: string, documentId: string): Promise<void>;
  /** The chunks that best answer `query`, best first. */
  search(knowledgeBaseId: string, options: { query: string; topK?: number }): Promise<SearchHit[]>;
}

// -- streams ---------------------------------------------------------------------------------

/**
 * One response's events, each exactly once, resumed across dropped connections. The request goes
 * out on the first iteration (or `open()`). Breaking out of `for await` or `close()` drops the
 * connection (the answer goes on); iterating again reattaches after the last event delivered.
 */
export declare class KaiwaStream implements AsyncIterable<StreamEvent> {
  private constructor();
  readonly chatId: number;
  /** Known once the stream is open (from `X-Kaiwa-Response-Id`, else the first event). */
  readonly responseId: string | null;
  /** The id of the last event delivered. */
  readonly lastEventId: number | null;
  /** Everything the events said so far. */
  readonly state: ResponseState;
  /** From `response.created`: for `client.responses.events(…, {token})` without the key. */
  readonly resumeToken: string | null;
  /** The terminal event (or `[DONE]`) has arrived. */
  readonly done: boolean;
  /** Send the request (once) and wait for the stream's headers; rejects with what was refused. */
  open(): Promise<this>;
  [Symbol.asyncIterator](): AsyncGenerator<StreamEvent, void, undefined>;
  /** The answer's text once the stream has ended; rejects with its `StreamError` if it failed. */
  finalText(): Promise<string>;
  /** Stop the answer (`POST …/cancel`); keep iterating to read its end. */
  cancel(): Promise<ResponseInfo>;
  /** Drop the connection; the answer goes on on the server unless it was cancelled. */
  close(): void;
}

/** Events folded into text, steps, usage, title and status (as kaiwa.protocol.ResponseState). */
export declare class ResponseState {
  responseId: string | null;
  chatId: number | null;
  status: ResponseStatus;
  title: string | null;
  usage: TokenUsage;
  error: ResponseError | null;
  steps: Array<Partial<StepStart> & Partial<StepEnd> & { id: string }>;
  readonly text: string;
  readonly done: boolean;
  apply(event: KaiwaEvent): void;
}

export interface ServerSentEvent {
  event: string;
  data: string;
  /** The last event id seen on the stream when this event was dispatched. */
  id: string | null;
  retry: number | null;
}

/** Push-style SSE decoder: bytes in (split anywhere), events out. */
export declare class SSEDecoder {
  readonly lastEventId: string | null;
  decode(chunk: Uint8Array | ArrayBuffer): ServerSentEvent[];
  /** End of stream: an unfinished event is discarded. */
  flush(): ServerSentEvent[];
}
