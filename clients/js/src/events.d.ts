// Every event a response stream carries, discriminated on `type`. Written by hand to mirror
// src/kaiwa/protocol/events.py in the kaiwa repository: keep the two in step.

export type StepType =
  | "consultant_search_web"
  | "consultant_fetch_web_content"
  | "consultant_retrieve_context_source"
  | "consultant_call_agent"
  | "consultant_request_form"
  | "consultant_lookup";

export type ToolName =
  | "search_web"
  | "fetch_web_content"
  | "retrieve_context_objs"
  | "call_agent"
  | "request_form"
  | "lookup";

/** The lifecycle of one response, also the `meta.status` of its assistant message. */
export type ResponseStatus = "in_progress" | "completed" | "cancelled" | "failed" | "awaiting_form";

export type CompletedStatus = "completed" | "cancelled" | "awaiting_form";

export interface TokenUsage {
  total_prompt_tokens: number;
  total_completion_tokens: number;
  total_tokens: number;
  /** How many model calls the tokens were spent in. */
  total_calls: number;
  /** [ext] Present (true) when some count is estimated: a call stopped before its provider
   * reported usage (a stopped answer), or a provider that reports none. */
  estimated?: boolean;
}

export interface StepStart {
  id: string;
  type: StepType;
  tool_name: ToolName;
  /** A human-readable line in the user's language: what the step is doing. */
  content: string;
  /** For `consultant_request_form`: `form_request_id` and the form's `fields`. */
  args: Record<string, unknown>;
  /** ISO-8601 UTC with `Z`. */
  timestamp: string;
}

export interface StepResult {
  success: boolean;
  data: unknown;
}

export interface StepEnd {
  /** Equal to the `id` of the matching start. */
  id: string;
  type: StepType;
  tool_name: ToolName;
  result: StepResult;
  timestamp: string;
  /** The model calls made inside this step (zeros when none). */
  token_usage: TokenUsage;
}

export interface EventBase {
  /**
   * The SSE `id:` of the event (1, 2, 3… within the response), null if the frame had none.
   * Not part of the payload: a non-enumerable property, left out of `JSON.stringify`.
   */
  readonly id: number | null;
  response_id: string;
  chat_id: number;
}

export interface ResponseCreated extends EventBase {
  type: "response.created";
  agent_id: string;
  model: string;
  /** The turn's group id: the `group_id` of its messages. */
  conversation_group_id: string;
  /** The id of the stored user message. */
  user_conversation_id: number;
  /** [ext] Signed, scoped to this response: reads its events without the API key. */
  resume_token?: string | null;
}

export interface ReasoningStepStart extends EventBase {
  type: "response.reasoning_step.start";
  step: StepStart;
}

export interface ReasoningStepEnd extends EventBase {
  type: "response.reasoning_step.end";
  step: StepEnd;
}

export interface OutputTextDelta extends EventBase {
  type: "response.output_text.delta";
  delta: string;
}

export interface ChatTitleUpdated extends EventBase {
  type: "response.chat.title.updated";
  name: string;
}

export interface OutputTextCompleted extends EventBase {
  type: "response.output_text.completed";
  /** The concatenation of every delta. */
  final_text: string;
  /** Every model call of the response, title generation included. */
  usage: TokenUsage;
  status: CompletedStatus;
}

export interface ResponseError extends EventBase {
  type: "response.error";
  message: string;
  code: number;
}

/** Every event of a response stream, discriminated on `type`. */
export type KaiwaEvent =
  | ResponseCreated
  | ReasoningStepStart
  | ReasoningStepEnd
  | OutputTextDelta
  | ChatTitleUpdated
  | OutputTextCompleted
  | ResponseError;

export type EventType = KaiwaEvent["type"];

/** What iterating a stream yields: a `response.error` is thrown as a `StreamError` instead. */
export type StreamEvent = Exclude<KaiwaEvent, ResponseError>;
