// Compiled by `npm run typecheck` (tsc --noEmit): the documented usage type-checks, events narrow
// on `type`, and misuse is rejected (each `@ts-expect-error` must see an error).

import {
  KaiwaClient,
  StreamError,
  UpstreamError,
  RateLimitedError,
  type StreamEvent,
  type KaiwaEvent,
} from "kaiwa-client";

declare const baseUrl: string;
declare const apiKey: string;
declare const chatId: number;
declare const agentId: string;
declare const message: string;

export async function documented(): Promise<string> {
  const client = new KaiwaClient({ baseUrl, apiKey });
  for await (const event of client.messages.stream(chatId, { message, agentId })) {
    const id: number | null = event.id;
    switch (event.type) {
      case "response.created":
        event.resume_token satisfies string | null | undefined;
        break;
      case "response.output_text.delta":
        event.delta satisfies string;
        break;
      case "response.reasoning_step.start":
        event.step.tool_name satisfies string;
        break;
      case "response.output_text.completed":
        event.status satisfies "completed" | "cancelled" | "awaiting_form";
        event.usage.total_tokens satisfies number;
        break;
      // @ts-expect-error response.error is thrown, never yielded
      case "response.error":
        break;
    }
    void id;
  }
  const stream = client.messages.stream(chatId, {
    message,
    agentId,
    signal: AbortSignal.timeout(1000),
  });
  const text: string = await stream.finalText();
  const responseId: string | null = stream.responseId;
  const status = await stream.cancel();
  status.status satisfies "in_progress" | "completed" | "cancelled" | "failed" | "awaiting_form";
  void responseId;
  const sent: string = await client.messages.send(chatId, { message, agentId });
  // @ts-expect-error agentId is required
  client.messages.stream(chatId, { message });
  return text + sent;
}

export async function errors(client: KaiwaClient): Promise<void> {
  try {
    await client.messages.send(chatId, { message, agentId });
  } catch (error) {
    if (error instanceof RateLimitedError) error.retryAfter satisfies number | null;
    if (error instanceof StreamError) error.event.code satisfies number;
    if (error instanceof UpstreamError) error.status satisfies number | null;
  }
}

export async function rest(client: KaiwaClient, file: Uint8Array): Promise<void> {
  const chat = await client.chats.create({ name: "n", agentId });
  const page = await client.messages.list(chat.id, { limit: 10 });
  page.items[0]?.meta.status satisfies string | null | undefined;
  for await (const agent of client.agents.iterAll()) agent.id satisfies string;
  (await client.agents.published())[0]?.name satisfies string | undefined;
  (await client.files.upload(file, { filename: "a.txt", scope: "ephemeral" }))
    .uuid satisfies string;
  await client.feedback.create(chat.id, 1, { type: "sys_helpful" });
  // @ts-expect-error an unknown feedback type
  await client.feedback.create(chat.id, 1, { type: "great" });
  const events = client.responses.events(chat.id, "r", { after: 3, token: "t" });
  const all: StreamEvent[] = [];
  for await (const event of events) all.push(event);
  const any: KaiwaEvent | undefined = all[0];
  void any;
  await client.forms.stream(chat.id, "f", { city: "東京" }).finalText();
}
