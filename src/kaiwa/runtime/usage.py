"""Token usage summed per model call, estimated where a provider reported none.

A provider reports a call's tokens when its stream ends. A call cut off before that — the answer
was stopped (the cancel endpoint, `on_disconnect=cancel`, `if_busy=interrupt`, shutdown), or
failed mid-stream — has no report, and neither has any call of a provider that never sends one.
Such a call still cost tokens, so they are estimated and the usage says so (`estimated: true`):

- prompt: the system prompt and every message of the request;
- completion: the text (and tool calls) the call streamed before it ended;

each counted with `kaiwa.llm.text.estimate_tokens`: one token per CJK character (kana, kanji,
full-width forms), per word of other scripts, and per punctuation mark. Japanese comes out
close to what current tokenizers spend (about one token per character); English somewhat low
(they spend about 1.3 tokens per word). An estimate never replaces a provider's own report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from kaiwa.llm import ModelRequest, ToolCall, Usage
from kaiwa.llm.text import estimate_prompt, estimate_tokens
from kaiwa.protocol import TokenUsage

__all__ = ["UsageMeter", "estimate_usage"]


def estimate_usage(request: ModelRequest, text: str, calls: Sequence[ToolCall] = ()) -> Usage:
    """The tokens a call of `request` that streamed `text` (and `calls`) probably cost."""
    output = text + "".join(
        call.name + json.dumps(call.arguments, ensure_ascii=False) for call in calls
    )
    return Usage(
        prompt_tokens=estimate_prompt(request.system, (m.content for m in request.messages)),
        completion_tokens=estimate_tokens(output),
    )


@dataclass
class UsageMeter:
    """Counts calls and tokens; `add_call` once per model call."""

    prompt: int = 0
    completion: int = 0
    calls: int = 0
    estimated: bool = False
    """Some of the tokens are an estimate."""

    def add_call(
        self,
        usage: Usage | None,
        *,
        request: ModelRequest,
        text: str,
        calls: Sequence[ToolCall] = (),
    ) -> None:
        """One call of `request`, with the usage its provider reported; without one, estimated
        from the request and the `text` (and tool `calls`) it streamed."""
        self.calls += 1
        if usage is None:
            usage = estimate_usage(request, text, calls)
            self.estimated = True
        self.prompt += usage.prompt_tokens
        self.completion += usage.completion_tokens

    def merge(self, other: UsageMeter) -> None:
        self.prompt += other.prompt
        self.completion += other.completion
        self.calls += other.calls
        self.estimated = self.estimated or other.estimated

    def merge_usage(self, usage: TokenUsage) -> None:
        """Add the calls made elsewhere (inside a step: a called agent's)."""
        self.prompt += usage.total_prompt_tokens
        self.completion += usage.total_completion_tokens
        self.calls += usage.total_calls
        self.estimated = self.estimated or usage.estimated

    def total(self) -> TokenUsage:
        return TokenUsage(
            total_prompt_tokens=self.prompt,
            total_completion_tokens=self.completion,
            total_tokens=self.prompt + self.completion,
            total_calls=self.calls,
            estimated=self.estimated,
        )
