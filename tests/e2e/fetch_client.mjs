// A minimal streaming client in the style of the Codeer docs' browser example: fetch, read
// response.body with getReader(), decode with TextDecoder({stream: true}), split the buffer on
// '\n' keeping the last partial line, handle `data: ` lines and stop at [DONE].
//
// Usage: node fetch_client.mjs '{"baseUrl": ..., "apiKey": ..., "chatId": ..., "agentId": ...,
//                               "message": ...}'
// Prints one JSON line summarising what it saw, for the pytest test to assert on.

const config = JSON.parse(process.argv[2]);
const summary = {
  status: null,
  ok: null,
  contentType: null,
  types: [],
  deltas: '',
  finalText: null,
  usage: null,
  title: null,
  error: null,
  done: false,
  errorBody: null,
};

function handleEvent(event) {
  summary.types.push(event.type);
  switch (event.type) {
    case 'response.output_text.delta':
      summary.deltas += event.delta;
      break;
    case 'response.chat.title.updated':
      summary.title = event.name;
      break;
    case 'response.output_text.completed':
      summary.finalText = event.final_text;
      summary.usage = event.usage;
      break;
    case 'response.error':
      summary.error = { code: event.code, message: event.message };
      break;
  }
}

async function streamChat() {
  const url = `${config.baseUrl}/api/v1/chats/${config.chatId}/messages`;
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'x-api-key': config.apiKey,
      'Content-Type': 'application/json',
      Accept: 'text/event-stream',
    },
    body: JSON.stringify({ message: config.message, stream: true, agent_id: config.agentId }),
    signal: AbortSignal.timeout(30000),
  });
  summary.status = response.status;
  summary.ok = response.ok;
  summary.contentType = response.headers.get('content-type');
  if (!response.ok) {
    summary.errorBody = await response.json();
    return;
  }

  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split('\n');
    buffer = lines.pop() || '';
    for (const line of lines) {
      if (!line.startsWith('data: ')) continue;
      const data = line.slice('data: '.length);
      if (data === '[DONE]') {
        summary.done = true;
        return;
      }
      try {
        handleEvent(JSON.parse(data));
      } catch (e) {
        // not JSON: ignore the line, as the documented client does
      }
    }
  }
}

await streamChat();
console.log(JSON.stringify(summary));
