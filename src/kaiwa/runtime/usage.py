"""Token usage summed per model call."""

from __future__ import annotations

from dataclasses import dataclass

from kaiwa.llm import Usage
from kaiwa.protocol import TokenUsage


@dataclass
class UsageMeter:
    """Counts calls and tokens; `add_call` once per model call, with its usage if reported."""

    prompt: int = 0
    completion: int = 0
    calls: int = 0

    def add_call(self, usage: Usage | None) -> None:
        self.calls += 1
        if usage is not None:
            self.prompt += usage.prompt_tokens
            self.completion += usage.completion_tokens

    def merge(self, other: UsageMeter) -> None:
        self.prompt += other.prompt
        self.completion += other.completion
        self.calls += other.calls

    def merge_usage(self, usage: TokenUsage) -> None:
        """Add the calls made elsewhere (inside a step: a called agent's)."""
        self.prompt += usage.total_prompt_tokens
        self.completion += usage.total_completion_tokens
        self.calls += usage.total_calls

    def total(self) -> TokenUsage:
        return TokenUsage(
            total_prompt_tokens=self.prompt,
            total_completion_tokens=self.completion,
            total_tokens=self.prompt + self.completion,
            total_calls=self.calls,
        )
